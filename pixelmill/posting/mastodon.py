"""Mastodon target: ``POST /api/v2/media`` per image (alt text as ``description``), poll
``GET /api/v1/media/:id`` while it is processing, then ``POST /api/v1/statuses`` with ``media_ids[]``
and an ``Idempotency-Key`` header so a repeated request returns the same status. When an earlier try
may have posted, the account's recent statuses (``GET /api/v1/accounts/:id/statuses``) are listed
before sending again, to tell an idempotent replay from a new status.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from pixelmill.node import Cancelled

from .base import Delivery, Keys, Limits, Post, PostingError, Target
from .http import Http
from .preflight import graphemes, mastodon_length

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/avif", "image/heic")
VIDEO_TYPES = ("video/mp4", "video/quicktime", "video/webm")
# Mastodon 4.x defaults (GET /api/v2/instance configuration.media_attachments): one video a status, never
# with images; 99 MiB (103,809,024 bytes), 8,294,400 pixels (3840x2160), 120 fps; no length limit.
VIDEO_BYTES, VIDEO_PIXELS, VIDEO_FPS = 103_809_024, 8_294_400, 120


class MastodonTarget(Target):
    kind = "mastodon"
    dedupes = True  # Idempotency-Key ...
    dedupe_window_s = 55 * 60  # ... which Mastodon keeps for about an hour

    def __init__(self, http: Http, instance: str, token: Callable[[], str], *, visibility: str = "public",
                 language: str | None = None, spoiler_text: str | None = None, sensitive: bool = False,
                 max_chars: int = 500, media_timeout: float = 60.0, poll_interval: float = 1.0,
                 wait: Callable[[float], bool] | None = None):
        self.http = http
        self.instance = instance.rstrip("/")
        self._token = token
        self.visibility = visibility
        self.language = language
        self.spoiler_text = spoiler_text
        self.sensitive = sensitive
        self.max_chars = max_chars
        self.media_timeout = media_timeout
        self.poll_interval = poll_interval
        self._wait = wait or (lambda s: time.sleep(s) or False)
        self._account_id: str | None = None

    def limits(self) -> Limits:
        # Mastodon 4.x defaults: 4 attachments, 16 MiB and 33,177,600 pixels an image, 1,500-character
        # descriptions, 500 characters a status (URLs count 23); instances may raise them (max_chars).
        return Limits(max_images=4, max_image_bytes=16 * 1024 * 1024, max_pixels=33_177_600,
                      media_types=IMAGE_TYPES, max_text=self.max_chars, count_text=mastodon_length,
                      max_alt=1500, count_alt=graphemes, video_types=VIDEO_TYPES, max_videos=1,
                      video_with_images=False, max_video_bytes=VIDEO_BYTES, max_video_pixels=VIDEO_PIXELS,
                      max_video_fps=VIDEO_FPS)

    def limits_for(self, post: Post, limits: Limits) -> tuple[Limits, list[str]]:
        """With a video: the instance's own media limits from ``GET /api/v2/instance`` (public, no token),
        or the Mastodon defaults when it cannot be read."""
        if not any(img.is_video for img in post.images):
            return limits, []
        try:
            resp = self.http.request("GET", f"{self.instance}/api/v2/instance", idempotent=True)
            config = _json(resp, "GET /api/v2/instance").get("configuration") or {}
        except PostingError as exc:
            return limits, [f"could not read the instance's media limits ({exc}); using Mastodon's defaults"]
        media = config.get("media_attachments") or {}
        statuses = config.get("statuses") or {}

        def number(section, key, default):
            value = section.get(key)
            return value if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else default

        types = media.get("supported_mime_types")
        videos = tuple(t for t in types if isinstance(t, str) and t.startswith("video/")) if isinstance(types, list) \
            else limits.video_types
        return replace(limits, max_images=int(number(statuses, "max_media_attachments", limits.max_images)),
                       max_image_bytes=int(number(media, "image_size_limit", limits.max_image_bytes)),
                       max_pixels=int(number(media, "image_matrix_limit", limits.max_pixels)),
                       max_alt=int(number(media, "description_limit", limits.max_alt)),
                       video_types=videos, max_video_bytes=int(number(media, "video_size_limit", VIDEO_BYTES)),
                       max_video_pixels=int(number(media, "video_matrix_limit", VIDEO_PIXELS)),
                       max_video_fps=float(number(media, "video_frame_rate_limit", VIDEO_FPS)),
                       no_video="takes no videos on this instance (configuration.media_attachments."
                                "supported_mime_types lists none)"), []

    def identity(self) -> str:
        return f"mastodon:{self.instance}"

    def _status_fields(self, post: Post, media_ids: list[str]) -> list[tuple[str, str]]:
        fields = [("status", post.text), ("visibility", self.visibility)]
        fields += [("media_ids[]", m) for m in media_ids]
        if self.language:
            fields.append(("language", self.language))
        if self.spoiler_text:
            fields.append(("spoiler_text", self.spoiler_text))
        if self.sensitive:
            fields.append(("sensitive", "true"))
        return fields

    def describe(self, post: Post, keys: Keys) -> list[dict]:
        auth = {"Authorization": "Bearer ***"}
        reqs = [{"method": "POST", "url": f"{self.instance}/api/v2/media", "headers": auth,
                 "multipart": {"file": f"{img.filename} ({img.media_type}, {len(img.data)} bytes, "
                               f"{img.width}x{img.height})", "description": img.alt},
                 **({"then": "GET /api/v1/media/<id> while it answers 206 (processing), until 200 with the url"}
                    if img.is_video else {})} for img in post.images]
        fields = self._status_fields(post, [f"<id of media {i}>" for i in range(1, len(post.images) + 1)])
        reqs.append({"method": "POST", "url": f"{self.instance}/api/v1/statuses",
                     "headers": {**auth, "Idempotency-Key": keys.idempotency_key}, "form": fields})
        return reqs

    def _auth(self) -> dict:
        return {"Authorization": f"Bearer {self._token()}"}

    def send(self, post: Post, keys: Keys, *, resume: bool) -> Delivery:
        media_ids = [self._upload(img) for img in post.images]
        # Mastodon answers a repeated Idempotency-Key with the status it made the first time, exactly as
        # if it were new. Whenever an earlier try may have posted, the account's recent status ids are
        # noted before sending again: an answer among them came from that earlier try.
        before: list[set[str] | None] = []

        def note_recent():
            before.append(self._recent_ids())

        if resume:
            note_recent()
        resp = self.http.request("POST", f"{self.instance}/api/v1/statuses", idempotent=True,
                                 headers={**self._auth(), "Idempotency-Key": keys.idempotency_key},
                                 data=self._status_fields(post, media_ids), before_retry=note_recent)
        status = _json(resp, "POST /api/v1/statuses")
        if not status.get("id"):
            raise PostingError(f"Mastodon answered POST /api/v1/statuses without a status id: {str(status)[:200]}")
        sid = str(status["id"])
        existing = any(ids is not None and sid in ids for ids in before)
        if existing:
            self.http.logger.info("%s: status %s was made by an earlier try (idempotent replay)", self.http.label,
                                  sid)
        return Delivery(sid, status.get("url") or status.get("uri"),
                        {"uri": status.get("uri"), "media_ids": media_ids, "existing": existing})

    def _recent_ids(self) -> set[str] | None:
        """Ids of the account's latest statuses (None when they cannot be read; then 'not known')."""
        try:
            if self._account_id is None:
                me = _json(self.http.request("GET", f"{self.instance}/api/v1/accounts/verify_credentials",
                                             idempotent=True, headers=self._auth()), "GET verify_credentials")
                self._account_id = str(me["id"])
            resp = self.http.request("GET", f"{self.instance}/api/v1/accounts/{self._account_id}/statuses",
                                     idempotent=True, headers=self._auth(), params={"limit": 40})
            listed = resp.json()
            return {str(s["id"]) for s in listed if isinstance(s, dict) and "id" in s}
        except (PostingError, ValueError, KeyError, TypeError) as exc:
            self.http.logger.info("%s: could not list recent statuses (%s)", self.http.label, exc)
            return None

    def _upload(self, img) -> str:
        # An upload is safe to repeat: a media attachment no status uses is removed by the instance.
        resp = self.http.request("POST", f"{self.instance}/api/v2/media", idempotent=True, headers=self._auth(),
                                 files={"file": (img.filename, img.data, img.media_type)},
                                 data={"description": img.alt})
        media = _json(resp, "POST /api/v2/media")
        media_id = str(media.get("id") or "")
        if not media_id:
            raise PostingError(f"Mastodon answered POST /api/v2/media without a media id: {str(media)[:200]}")
        if resp.status_code == 202:
            self.http.logger.info("%s: media %s (%s) accepted, processing", self.http.label, media_id, img.filename)
        deadline = time.monotonic() + self.media_timeout
        while resp.status_code == 202 or media.get("url") is None:
            if time.monotonic() > deadline:
                raise PostingError(f"Mastodon did not finish processing media {media_id} ({img.filename}) within "
                                   f"{self.media_timeout:g} s; nothing was posted (raise config 'media_timeout' "
                                   "for long videos)", definitive=True)
            if self._wait(self.poll_interval):
                raise Cancelled("cancelled while Mastodon processed the media")
            try:
                resp = self.http.request("GET", f"{self.instance}/api/v1/media/{media_id}", idempotent=True,
                                         headers=self._auth())
            except PostingError as exc:
                if exc.status == 422:  # processing failed: Mastodon answers 422 from then on
                    raise PostingError(f"Mastodon could not process {img.filename} (media {media_id}); nothing "
                                       f"was posted: {exc}", status=422) from None
                raise
            if resp.status_code == 206:
                continue
            media = _json(resp, f"GET /api/v1/media/{media_id}")
            if resp.status_code == 200 and media.get("url"):
                break
        return media_id


def _json(resp, what: str) -> dict:
    try:
        body = resp.json()
    except ValueError:
        raise PostingError(f"Mastodon answered {what} with something that is not JSON "
                           f"(HTTP {resp.status_code})") from None
    if not isinstance(body, dict):
        raise PostingError(f"Mastodon answered {what} with unexpected JSON")
    return body
