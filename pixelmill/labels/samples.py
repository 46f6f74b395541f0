"""Synthetic test images that look like small generated pictures (for tests and benches; no model needed)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def smooth_field(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Random smooth field in 0..1 (low-pass filtered noise)."""
    noise = rng.standard_normal((size, size))
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    filt = np.exp(-(fx**2 + fy**2) * (scale * size) ** 2 / 2)
    field = np.real(np.fft.ifft2(np.fft.fft2(noise) * filt))
    field -= field.min()
    return field / max(field.max(), 1e-9)


def generated_like(size: int, seed: int = 0, kind: str = "scene") -> Image.Image:
    """A ``size`` x ``size`` RGB picture: smooth colour regions, shapes, edges and fine texture.

    ``kind``: ``scene`` (default), ``upscaled`` (drawn at 64 px then upscaled, like a tiny model's output),
    ``flat`` (a uniform mid-grey), ``light`` (a pale, nearly white picture), ``dark`` (a nearly black one).
    """
    rng = np.random.default_rng(seed)
    if kind == "upscaled" and size > 64:
        return generated_like(64, seed, "scene").resize((size, size), Image.Resampling.BICUBIC)
    if kind == "flat":
        return Image.new("RGB", (size, size), (128, 128, 128))
    channels = [smooth_field(rng, size, 0.08) for _ in range(3)]
    rgb = np.stack(channels, axis=-1) * 200 + 25
    rgb += rng.standard_normal(rgb.shape) * 6  # sensor-like texture
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = rng.integers(0, size * 3 // 4, 2)
        r = int(rng.integers(size // 10, size // 3))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x0 + r, y0 + r], fill=colour)
        else:
            draw.rectangle([x0, y0, x0 + r, y0 + r], fill=colour)
    if kind == "light":
        arr = np.asarray(img, dtype=np.float64) * 0.25 + 185
        img = Image.fromarray(arr.astype(np.uint8), "RGB")
    elif kind == "dark":
        arr = np.asarray(img, dtype=np.float64) * 0.2 + 5
        img = Image.fromarray(arr.astype(np.uint8), "RGB")
    return img
