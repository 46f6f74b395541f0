"""Label an MP4: the badge burned into every frame (re-encoded as H.264 ``yuv420p``), container tags, and the
XMP packet in a ``uuid`` box. C2PA is signed afterwards by the caller (``c2pa.sign_file`` with ``video/mp4``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pixelmill.video.encode import even, read_frames, write_mp4

from . import badge as badge_mod
from .mp4 import append_xmp


@dataclass
class VideoLabel:
    frames: int
    width: int
    height: int
    fps: float
    badge_text: str | None
    audio_dropped: int
    skipped: dict[str, str]


def _badge_layer(width: int, height: int, text: str, corner: str, size: float) -> tuple[Image.Image, str]:
    """The badge once, on a transparent layer, composited onto every frame (the same pixels each time)."""
    probe = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    drawn, _, shown = badge_mod.draw_badge(probe, text, corner, size)
    return drawn, shown


def label_mp4(src: Path, dst: Path, *, packet_for, badge: bool, badge_text: str, corner: str, size: float,
              tags: dict[str, str], crf: int = 18, check_cancelled=lambda: None) -> VideoLabel:
    """Decode ``src``, burn the badge into each frame, encode ``dst`` (H.264 yuv420p, same frame rate, even
    size), then append the XMP packet that ``packet_for(badge_text_or_None, width, height)`` returns."""
    with read_frames(src) as (frames, rate, info):
        return _label(frames, rate, info, dst, packet_for=packet_for, badge=badge, badge_text=badge_text,
                      corner=corner, size=size, tags=tags, crf=crf, check_cancelled=check_cancelled)


def _label(frames, rate, info, dst: Path, *, packet_for, badge, badge_text, corner, size, tags, crf,
           check_cancelled) -> VideoLabel:
    width, height = even(info["width"]), even(info["height"])
    skipped: dict[str, str] = {}
    layer = shown = None
    if badge:
        try:
            layer, shown = _badge_layer(width, height, badge_text, corner, size)
        except badge_mod.BadgeDoesNotFit as exc:
            skipped["badge"] = str(exc)

    def labelled():
        for n, arr in enumerate(frames):
            if n % 16 == 0:
                check_cancelled()
            im = Image.fromarray(arr)
            if im.size != (width, height):
                im = im.crop((0, 0, width, height))
            if layer is not None:
                im = Image.alpha_composite(im.convert("RGBA"), layer).convert("RGB")
            yield np.asarray(im, dtype=np.uint8)

    count = write_mp4(labelled(), dst, rate, crf=crf, metadata=tags)
    append_xmp(dst, packet_for(shown, width, height))
    if info["audio"]:
        skipped["audio"] = f"{info['audio']} audio stream(s) dropped: the labelled video is re-encoded without sound"
    return VideoLabel(frames=count, width=width, height=height, fps=float(rate), badge_text=shown,
                      audio_dropped=info["audio"], skipped=skipped)
