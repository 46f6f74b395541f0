"""Slideshow frames from still images: hold, crossfade, zoom ("Ken Burns") or pan, optional burned-in captions.

Each image owns ``round(seconds_per_image * fps)`` frames; a crossfade blends the previous image into the
next during the first ``transition_s`` of the next one, so the length is ``images x frames per image``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from .encode import even

TRANSITIONS = ("none", "crossfade", "zoom", "pan")


def fit(image, width: int, height: int):
    """Scale ``image`` to cover width x height and crop the centre (no bars, no distortion)."""
    from PIL import Image

    im = image.convert("RGB")
    scale = max(width / im.width, height / im.height)
    w, h = max(width, round(im.width * scale)), max(height, round(im.height * scale))
    im = im.resize((w, h), Image.Resampling.LANCZOS)
    left, top = (w - width) // 2, (h - height) // 2
    return im.crop((left, top, left + width, top + height))


def caption(image, text: str):
    """Burn ``text`` into the bottom of the frame on a dark band (wrapped to the width)."""
    import textwrap

    from PIL import ImageDraw, ImageFont

    im = image.copy()
    draw = ImageDraw.Draw(im)
    size = max(10, im.height // 18)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        font = ImageFont.load_default()
    chars = max(8, int(im.width / (size * 0.55)))
    lines = textwrap.wrap(" ".join(text.split()), chars)[:3]
    if not lines:
        return im
    line_h = size + size // 4
    band = line_h * len(lines) + size // 2
    draw.rectangle((0, im.height - band, im.width, im.height), fill=(0, 0, 0))
    for i, line in enumerate(lines):
        draw.text((size // 2, im.height - band + size // 4 + i * line_h), line, fill=(255, 255, 255), font=font)
    return im


def _motion(image, width: int, height: int, progress: float, kind: str, zoom: float, index: int):
    """A crop of the (pre-enlarged) image that zooms in or pans across as ``progress`` goes 0 -> 1."""
    from PIL import Image

    W, H = image.size
    if kind == "zoom":
        scale = 1.0 + (zoom - 1.0) * progress
        cw, ch = W / scale, H / scale
        left, top = (W - cw) / 2, (H - ch) / 2
    else:  # pan: a zoomed window sliding left->right, then right->left on the next image
        cw, ch = W / zoom, H / zoom
        p = progress if index % 2 == 0 else 1.0 - progress
        left, top = (W - cw) * p, (H - ch) / 2
    return image.resize((width, height), Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch))


def slideshow_frames(images: Sequence, *, width: int, height: int, fps: float, seconds_per_image: float,
                     transition: str = "crossfade", transition_s: float = 0.5, zoom: float = 1.15,
                     captions: Sequence[str] | None = None) -> Iterator[np.ndarray]:
    """HxWx3 uint8 frames for ``images`` (PIL images); ``width``/``height`` are made even."""
    if transition not in TRANSITIONS:
        raise ValueError(f"unknown transition '{transition}' (one of {', '.join(TRANSITIONS)})")
    width, height = even(width), even(height)
    per = max(1, round(seconds_per_image * fps))
    fade = min(per, max(0, round(transition_s * fps))) if transition == "crossfade" else 0
    moving = transition in ("zoom", "pan")
    prepared = []
    for im in images:
        big = fit(im, round(width * zoom), round(height * zoom)) if moving else fit(im, width, height)
        prepared.append(big)
    captions = list(captions or [])
    previous = None
    for i, im in enumerate(prepared):
        text = captions[i] if i < len(captions) else ""
        static = None if moving else np.asarray(caption(im, text) if text else im, dtype=np.uint8)
        last = None
        for k in range(per):
            if moving:
                frame = _motion(im, width, height, k / max(1, per - 1), transition, zoom, i)
                arr = np.asarray(caption(frame, text) if text else frame, dtype=np.uint8)
            else:
                arr = static
            if previous is not None and k < fade:
                a = (k + 1) / (fade + 1)
                arr = (previous.astype(np.float32) * (1 - a) + arr.astype(np.float32) * a + 0.5).astype(np.uint8)
            last = arr
            yield arr
        previous = last
