"""The visible "AI-generated" badge: white text on a dark translucent pill with a light outline.

Dark fill behind white text reads on light images; the light outline and the text's dark stroke keep the
shape visible on dark images. Its height is a fraction of the image's short side.
"""

from __future__ import annotations

from typing import Literal

from PIL import Image, ImageDraw, ImageFont

Corner = Literal["bottom-right", "bottom-left", "top-right", "top-left"]
CORNERS = ("bottom-right", "bottom-left", "top-right", "top-left")
MIN_FONT_PX = 7
MIN_TINY_FONT_PX = 5


class BadgeDoesNotFit(ValueError):
    """The image is too small for a readable badge."""


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's built-in scalable font (needs FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def draw_badge(image: Image.Image, text: str = "AI-generated", corner: str = "bottom-right",
               size: float = 0.06, opacity: float = 0.72) -> tuple[Image.Image, tuple[int, int, int, int], str]:
    """Return a copy with the badge drawn, the badge's box (left, top, right, bottom) and the text drawn
    (``"AI"`` when the full text does not fit a small image); raise BadgeDoesNotFit when nothing fits."""
    if corner not in CORNERS:
        raise ValueError(f"badge corner {corner!r} is not one of {', '.join(CORNERS)}")
    if not 0 < size <= 0.5:
        raise ValueError(f"badge size {size} must be a fraction of the image's short side in (0, 0.5]")
    if not text.strip():
        raise ValueError("badge text is empty")
    w, h = image.size
    short = min(w, h)
    font_px = max(MIN_FONT_PX, round(short * size * 0.62))
    font = _font(font_px)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font)
    tw, th = right - left, bottom - top
    pad_x, pad_y = max(2, round(font_px * 0.45)), max(1, round(font_px * 0.3))
    bw, bh = tw + 2 * pad_x, th + 2 * pad_y
    if bw > w or bh > h:  # small image: shrink the font, then fall back to the short text "AI"
        for candidate in (text, "AI"):
            scale = min(w / bw, h / bh) * 0.95
            font_px = max(MIN_TINY_FONT_PX, int(font_px * min(scale, 1.0)))
            font = _font(font_px)
            left, top, right, bottom = probe.textbbox((0, 0), candidate, font=font)
            tw, th = right - left, bottom - top
            pad_x, pad_y = max(1, round(font_px * 0.3)), max(1, round(font_px * 0.2))
            bw, bh = tw + 2 * pad_x, th + 2 * pad_y
            if bw <= w and bh <= h:
                text = candidate
                break
        else:
            raise BadgeDoesNotFit(f"image is {w}x{h}; even an 'AI' badge needs {bw}x{bh} px")
    margin = max(1, round(short * 0.02))
    x0 = margin if corner.endswith("left") else w - bw - margin
    y0 = margin if corner.startswith("top") else h - bh - margin
    x0, y0 = max(0, x0), max(0, y0)
    box = (x0, y0, x0 + bw, y0 + bh)

    base = image.convert("RGBA")
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    radius = max(1, bh // 3)
    outline_w = max(1, round(font_px / 14))
    draw.rounded_rectangle(box, radius=radius, fill=(16, 16, 16, round(255 * opacity)),
                           outline=(255, 255, 255, 200), width=outline_w)
    stroke = max(0, round(font_px / 16))
    draw.text((x0 + pad_x - left, y0 + pad_y - top), text, font=font, fill=(255, 255, 255, 255),
              stroke_width=stroke, stroke_fill=(0, 0, 0, 255))
    out = Image.alpha_composite(base, overlay)
    if image.mode != "RGBA":
        out = out.convert("RGB")
    return out, box, text


def contrast_ratio(rgb1: tuple[float, float, float], rgb2: tuple[float, float, float]) -> float:
    """WCAG contrast ratio between two sRGB colours (1 .. 21)."""
    def lum(c):
        vals = []
        for v in c:
            v = v / 255
            vals.append(v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4)
        return 0.2126 * vals[0] + 0.7152 * vals[1] + 0.0722 * vals[2]
    a, b = sorted((lum(rgb1), lum(rgb2)), reverse=True)
    return (a + 0.05) / (b + 0.05)
