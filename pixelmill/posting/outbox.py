"""Outbox target: each post becomes a folder (``post.json`` + the images and videos), written atomically.

The folder is built under a temporary name in the outbox and renamed into place, so a reader never
sees half a post. Its name ends with the post's slot (derived from original run, step and target),
so a repeated attempt finds the folder and does not write a second one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

from .base import Delivery, Keys, Limits, Post, Target


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:60] or "post"


class OutboxTarget(Target):
    kind = "outbox"
    dedupes = True

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def limits(self) -> Limits:
        return Limits(max_images=None, media_types=("image/jpeg", "image/png", "image/webp", "image/gif",
                                                    "image/avif", "image/heic"),
                      video_types=("video/mp4", "video/quicktime"), max_videos=None, video_codecs=None,
                      video_pix_fmts=None)

    def identity(self) -> str:
        return f"outbox:{self.folder.resolve()}"

    def find(self, keys: Keys) -> Path | None:
        if not self.folder.is_dir():
            return None
        for path in self.folder.iterdir():
            if path.is_dir() and path.name.endswith(f"-{keys.slot}") and not path.name.startswith("."):
                return path
        return None

    def document(self, post: Post, keys: Keys, names: list[str]) -> dict:
        pairs = list(zip(names, post.images, strict=True))
        doc = {
            "text": post.text,
            "images": [{"file": n, "media_type": i.media_type, "width": i.width, "height": i.height, "alt": i.alt}
                       for n, i in pairs if not i.is_video],
            "caption": post.caption,
            "labels": post.labels,
            "workflow": post.workflow,
            "run_id": post.run_id,
            "step_id": post.step_id,
            "idempotency_key": keys.idempotency_key,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        videos = [{"file": n, "media_type": i.media_type, "width": i.width, "height": i.height,
                   "duration_s": i.duration_s, "alt": i.alt} for n, i in pairs if i.is_video]
        if videos:
            doc["videos"] = videos
        return doc

    def _names(self, post: Post) -> list[str]:
        names, counts = [], {"image": 0, "video": 0}
        for img in post.images:
            ext = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/gif": ".gif",
                   "video/mp4": ".mp4", "video/quicktime": ".mov"}.get(img.media_type,
                                                                        Path(img.filename).suffix or ".bin")
            kind = "video" if img.is_video else "image"
            counts[kind] += 1
            names.append(f"{kind}-{counts[kind]}{ext}")
        return names

    def describe(self, post: Post, keys: Keys) -> list[dict]:
        names = self._names(post)
        return [{"action": "write folder", "folder": str(self.folder), "slot": keys.slot,
                 "files": ["post.json", *names], "post.json": self.document(post, keys, names)}]

    def send(self, post: Post, keys: Keys, *, resume: bool) -> Delivery:
        existing = self.find(keys)
        if existing is not None:
            return Delivery(existing.name, existing.resolve().as_uri(), {"folder": str(existing), "existing": True})
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        final = self.folder / f"{stamp}-{_safe(post.workflow)}-{keys.slot}"
        tmp = self.folder / f".tmp-{keys.slot}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            names = self._names(post)
            for name, img in zip(names, post.images, strict=True):
                _write(tmp / name, img.data)
            _write(tmp / "post.json", json.dumps(self.document(post, keys, names), indent=2,
                                                 ensure_ascii=False).encode("utf-8"))
            _fsync_dir(tmp)
            try:
                os.rename(tmp, final)
            except OSError:
                if final.exists():  # someone else finished the same post first
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    raise
            _fsync_dir(self.folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return Delivery(final.name, final.resolve().as_uri(), {"folder": str(final)})


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
