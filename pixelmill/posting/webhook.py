"""Webhook target: POST the post to a URL, shaped for n8n's Webhook node, Discord, Slack or anything else.

- ``n8n`` / ``generic``: JSON (text, caption, labels, run id, images as base64 or URL), or multipart
  (``payload_json`` + ``files[n]``) with ``image_mode: multipart``; an ``Idempotency-Key`` header
  lets the receiver drop repeats.
- ``discord``: multipart ``payload_json`` + ``files[n]`` with ``?wait=true`` so the message comes back.
- ``slack``: incoming webhooks take JSON only: text plus image blocks that point at image URLs.

``body`` is an optional per-target template: a mapping whose strings are jinja2 templates over
``text, caption, labels, run_id, workflow, step_id, images, videos, idempotency_key``; a string that is just
``{{ expression }}`` keeps the expression's type (a list stays a list).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .base import Delivery, Keys, Limits, Post, PostingError, PreflightError, Target
from .http import Http, mark_sensitive

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_SINGLE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.DOTALL)
ALL_IMAGES = ("image/jpeg", "image/png", "image/webp", "image/gif")
VIDEOS = ("video/mp4", "video/quicktime")


def render_template(template: Any, variables: dict) -> Any:
    if isinstance(template, str):
        m = _SINGLE.match(template)
        if m and "{{" not in m.group(1) and "}}" not in m.group(1):
            return _ENV.compile_expression(m.group(1).strip(), undefined_to_none=False)(**variables)
        return _ENV.from_string(template).render(**variables)
    if isinstance(template, dict):
        return {k: render_template(v, variables) for k, v in template.items()}
    if isinstance(template, list):
        return [render_template(v, variables) for v in template]
    return template


class WebhookTarget(Target):
    kind = "webhook"

    def __init__(self, http: Http, url: str, *, flavour: str = "generic", body: Any = None,
                 image_mode: str = "base64", headers: dict | None = None, dedupes: bool = False,
                 url_is_secret: bool = False):
        self.http = http
        self.url = url
        self.flavour = flavour
        self.body = body
        self.image_mode = image_mode
        self.headers = headers or {}
        self.dedupes = dedupes
        self.url_is_secret = url_is_secret
        parts = urlsplit(url)
        self.safe_url = f"{parts.scheme}://{parts.netloc}/…" if url_is_secret else url
        if url_is_secret:
            mark_sensitive(url, parts.path)

    def limits(self) -> Limits:
        if self.flavour == "discord":
            # 2,000-character content, 10 attachments, 10 MiB a file (unboosted servers), 1,024-char descriptions;
            # videos are attachments too, within the same 10 MiB a file
            return Limits(max_images=10, max_image_bytes=10 * 1024 * 1024, media_types=ALL_IMAGES, max_text=2000,
                          max_alt=1024, video_types=VIDEOS, max_videos=10, max_video_bytes=10 * 1024 * 1024)
        if self.flavour == "slack":
            return Limits(max_images=10, media_types=ALL_IMAGES, max_text=3000, max_alt=2000, needs_image_url=True,
                          no_video="incoming webhooks take text and image blocks only: put a link to the video "
                                   "in the text")
        inline = self.image_mode in ("base64", "multipart")
        # n8n accepts 16 MB a request by default; base64 grows images (and videos) by a third.
        cap = 11_000_000 if inline else None
        return Limits(max_images=None, max_image_bytes=cap, media_types=ALL_IMAGES,
                      needs_image_url=self.image_mode == "url", video_types=VIDEOS, max_videos=None,
                      max_video_bytes=cap, video_codecs=None, video_pix_fmts=None)

    def identity(self) -> str:
        return f"webhook:{self.flavour}:{hashlib.sha256(self.url.encode()).hexdigest()[:20]}"

    # -- building the request ------------------------------------------------------

    def _images(self, post: Post, inline: bool) -> list[dict]:
        out = []
        for i, img in enumerate(post.images):
            ref = post.image_refs[i] if i < len(post.image_refs) else {}
            item = {"filename": img.filename, "media_type": img.media_type, "width": img.width,
                    "height": img.height, "alt": img.alt, "url": ref.get("url")}
            if img.is_video:
                item["duration_s"] = img.duration_s
            if inline:
                item["data_base64"] = base64.b64encode(img.data).decode("ascii")
            out.append(item)
        return out

    def _variables(self, post: Post, keys: Keys, inline: bool) -> dict:
        every = self._images(post, inline)
        media_list = ([m for m in every if not m["media_type"].startswith("video/")],
                      [m for m in every if m["media_type"].startswith("video/")])
        return {"text": post.text, "caption": post.caption, "labels": post.labels, "run_id": post.run_id,
                "workflow": post.workflow, "step_id": post.step_id, "images": media_list[0],
                "videos": media_list[1], "idempotency_key": keys.idempotency_key}

    def _payload(self, post: Post, keys: Keys, inline: bool) -> Any:
        variables = self._variables(post, keys, inline)
        if self.body is not None:
            try:
                payload = render_template(self.body, variables)
                json.dumps(payload)
            except (TemplateError, TypeError, ValueError) as exc:
                raise PreflightError(f"{self.flavour} webhook", [f"config 'body' template: {exc}"]) from None
            return payload
        if self.flavour == "discord":
            return {"content": post.text,
                    "attachments": [{"id": i, "filename": img.filename, "description": img.alt}
                                    for i, img in enumerate(post.images)]}
        if self.flavour == "slack":
            blocks: list[dict] = [{"type": "section", "text": {"type": "mrkdwn", "text": post.text}}] if post.text \
                else []
            blocks += [{"type": "image", "image_url": img["url"], "alt_text": img["alt"]}
                       for img in variables["images"]]
            return {"text": post.text or (post.caption or "image"), "blocks": blocks}
        payload = {"text": post.text, "caption": post.caption, "labels": post.labels, "run_id": post.run_id,
                   "workflow": post.workflow, "step_id": post.step_id, "images": variables["images"]}
        if variables["videos"]:
            payload["videos"] = variables["videos"]
        return payload

    def _multipart(self) -> bool:
        return self.flavour == "discord" or (self.flavour in ("n8n", "generic") and self.image_mode == "multipart")

    def _request(self, post: Post, keys: Keys) -> tuple[str, dict]:
        url = self.url
        if self.flavour == "discord":
            parts = urlsplit(url)
            query = parts.query if "wait=" in parts.query else "&".join(q for q in (parts.query, "wait=true") if q)
            url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
        headers = dict(self.headers)
        if self.flavour in ("n8n", "generic"):
            headers["Idempotency-Key"] = keys.idempotency_key
        if self._multipart():
            payload = self._payload(post, keys, inline=False)
            files = [(f"files[{i}]", (img.filename, img.data, img.media_type)) for i, img in enumerate(post.images)]
            return url, {"headers": headers, "data": {"payload_json": json.dumps(payload)}, "files": files}
        inline = self.image_mode == "base64" and self.flavour != "slack"
        return url, {"headers": headers, "json": self._payload(post, keys, inline)}

    def describe(self, post: Post, keys: Keys) -> list[dict]:
        _, kw = self._request(post, keys)
        shown: dict = {"method": "POST", "url": self.safe_url,
                       "headers": {k: ("***" if k.lower() not in ("idempotency-key",) else v)
                                   for k, v in kw["headers"].items()}}
        if "json" in kw:
            body = json.loads(json.dumps(kw["json"]))
            for img in [*body.get("images", []), *body.get("videos", [])] if isinstance(body, dict) else []:
                if isinstance(img, dict) and "data_base64" in img:
                    img["data_base64"] = f"<{len(img['data_base64'])} base64 characters>"
            shown["json"] = body
        else:
            shown["multipart"] = {"payload_json": json.loads(kw["data"]["payload_json"]),
                                  **{name: f"{f[0]} ({f[2]}, {len(f[1])} bytes)" for name, f in kw["files"]}}
        return [shown]

    def send(self, post: Post, keys: Keys, *, resume: bool) -> Delivery:
        url, kw = self._request(post, keys)
        resp = self.http.request("POST", url, idempotent=self.dedupes, safe_url=urlsplit(url).netloc, **kw)
        remote_id, link, detail = None, None, {"status": resp.status_code}
        if self.flavour == "discord":
            try:
                msg = resp.json()
            except ValueError:
                raise PostingError("Discord answered without the message (is '?wait=true' blocked?)") from None
            remote_id = str(msg.get("id")) if msg.get("id") else None
            if msg.get("guild_id") and msg.get("channel_id") and remote_id:
                link = f"https://discord.com/channels/{msg['guild_id']}/{msg['channel_id']}/{remote_id}"
            detail["channel_id"] = msg.get("channel_id")
        elif self.flavour == "slack":
            if resp.text.strip() != "ok":
                raise PostingError(f"Slack answered: {resp.text[:200]}")
        else:
            try:
                answer = resp.json()
            except ValueError:
                answer = None
            if isinstance(answer, dict):
                remote_id = str(answer["id"]) if answer.get("id") is not None else None
                link = answer.get("url") if isinstance(answer.get("url"), str) else None
        return Delivery(remote_id, link, detail)
