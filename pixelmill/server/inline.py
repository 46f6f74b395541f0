"""Artifacts inline in a reply, for clients such as n8n that want the image without a second request:
``Accept: image/png`` (or ``image/*``) returns the first image artifact's bytes; ``?inline=base64`` adds
``data`` (base64) to every artifact reference in the JSON body (up to PIXELMILL_MAX_BODY bytes in all)."""

from __future__ import annotations

import base64

from flask import request

from .downloads import send_artifact
from .http import ApiError

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")


def _refs(value):
    if isinstance(value, dict):
        if value.get("kind") == "artifact" and "run_id" in value and "name" in value:
            yield value
            return
        for v in value.values():
            yield from _refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _refs(v)


def wants_image() -> str | None:
    """The image type ``Accept`` prefers over JSON (``image/png``, ``image/*``), else None."""
    accept = request.accept_mimetypes
    if not accept.provided:
        return None
    best = accept.best_match(["application/json", *IMAGE_TYPES], default=None)
    return best if best in IMAGE_TYPES else None


def wants_base64() -> bool:
    return request.args.get("inline", "").lower() == "base64"


def _size(artifacts, ref: dict) -> int | None:
    try:
        return artifacts.size(str(ref["run_id"]), str(ref["name"]))
    except ValueError:  # not a plain name: not an artifact of ours
        return None


def image_reply(outputs: dict, artifacts, run_id: str):
    """The first image artifact of ``outputs`` as the response body; 406 when the run has none."""
    for ref in _refs(outputs or {}):
        media = ref.get("media_type") or ""
        size = _size(artifacts, ref) if media.startswith("image/") else None
        if size is not None:
            resp = send_artifact(artifacts, str(ref["run_id"]), str(ref["name"]), media, size=size,
                                 inline_name=True)
            resp.headers["X-Pixelmill-Run-Id"] = run_id
            return resp
    raise ApiError(406, "no_image", f"run {run_id} has no image output to send as the body; ask for "
                                    "application/json to get its outputs")


def add_base64(value, artifacts, budget: int):
    """A copy of ``value`` whose artifact references carry ``data`` (base64), within ``budget`` bytes."""
    left = [budget]

    def walk(v):
        if isinstance(v, dict):
            out = {k: walk(x) for k, x in v.items()}
            if v.get("kind") == "artifact" and "run_id" in v and "name" in v:
                size = _size(artifacts, v)
                if size is not None and size <= left[0]:
                    left[0] -= size
                    out["data"] = base64.b64encode(artifacts.read_bytes(str(v["run_id"]), str(v["name"]))).decode()
                elif size is not None:
                    out["data_omitted"] = "too large to inline (PIXELMILL_MAX_BODY); download it from url"
            return out
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value)
