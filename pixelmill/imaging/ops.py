"""Pillow operations behind the ``image_ops`` node (and reused by ``edit_image`` for outpainting)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from PIL import Image, ImageColor, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

MAX_SIDE = 16384  # pixels: an output side beyond this is a mistake
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


class ImageOpError(ValueError):
    """A bad parameter or an unreadable image (not worth retrying)."""

    retryable = False


def open_image(path: Path, name: str = "") -> Image.Image:
    """A fully loaded copy of an image file (RGB or RGBA); Pillow's decompression-bomb guard applies."""
    try:
        with Image.open(path) as opened:
            opened.load()
            image = opened.copy()
    except FileNotFoundError:
        raise ImageOpError(f"image artifact {name or path.name!r} does not exist") from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ImageOpError(f"{name or path.name!r} is not a readable image: {exc}") from None
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    return image.convert("RGBA" if has_alpha else "RGB")


def parse_color(value: str, mode: str):
    try:
        rgba = ImageColor.getcolor(value, "RGBA")
    except ValueError:
        raise ImageOpError(f"unknown colour {value!r} (use '#rrggbb' or a name such as 'white')") from None
    return rgba if mode == "RGBA" else rgba[:3]


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1 or width > MAX_SIDE or height > MAX_SIDE:
        raise ImageOpError(f"the result would be {width}x{height} pixels; each side must be 1..{MAX_SIDE}")


def resize(image, width=None, height=None, fit="contain"):
    w, h = image.size
    if width is None:
        width = max(1, round(w * height / h))
    if height is None:
        height = max(1, round(h * width / w))
    _check_size(width, height)
    if fit == "stretch":
        return image.resize((width, height), Image.Resampling.LANCZOS)
    if fit == "cover":
        return ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS)
    return ImageOps.contain(image, (width, height), Image.Resampling.LANCZOS)


def crop(image, left, top, width, height):
    if left + width > image.width or top + height > image.height:
        raise ImageOpError(f"crop box {left},{top} {width}x{height} goes outside the {image.width}x{image.height} "
                           f"image")
    return image.crop((left, top, left + width, top + height))


def pad(image, left=0, top=0, right=0, bottom=0, color="#000000"):
    _check_size(image.width + left + right, image.height + top + bottom)
    out = Image.new(image.mode, (image.width + left + right, image.height + top + bottom),
                    parse_color(color, image.mode))
    out.paste(image, (left, top))
    return out


def rotate(image, degrees, expand=True, color="#000000"):
    return image.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=expand,
                        fillcolor=parse_color(color, image.mode))


def flip(image, direction="horizontal"):
    return ImageOps.mirror(image) if direction == "horizontal" else ImageOps.flip(image)


def grid(images, columns=None, cell_width=None, cell_height=None, gap=0, color="#ffffff"):
    """Tiles in rows of ``columns``, each fitted (aspect kept) and centred in its cell."""
    if not images:
        raise ImageOpError("a grid needs at least one image")
    n = len(images)
    columns = min(columns or math.ceil(math.sqrt(n)), n)
    rows = math.ceil(n / columns)
    cw, ch = cell_width or images[0].width, cell_height or images[0].height
    width, height = columns * cw + (columns - 1) * gap, rows * ch + (rows - 1) * gap
    _check_size(width, height)
    mode = "RGBA" if any(i.mode == "RGBA" for i in images) else "RGB"
    out = Image.new(mode, (width, height), parse_color(color, mode))
    for k, tile in enumerate(images):
        tile = ImageOps.contain(tile.convert(mode), (cw, ch), Image.Resampling.LANCZOS)
        x = (k % columns) * (cw + gap) + (cw - tile.width) // 2
        y = (k // columns) * (ch + gap) + (ch - tile.height) // 2
        out.paste(tile, (x, y))
    return out


def _wrap(draw, text: str, font, width: int) -> list[str]:
    lines: list[str] = []
    for para in text.splitlines() or [""]:
        line = ""
        for word in para.split(" "):
            trial = f"{line} {word}" if line else word
            if draw.textlength(trial, font=font) <= width or not line:
                line = trial
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return lines


def caption(image, text, position="bottom", size=16, color="#ffffff", background="#000000", padding=8):
    """A bar above or below the image with the text wrapped to its width (Pillow's built-in scalable font)."""
    font = ImageFont.load_default(size=size)
    probe = ImageDraw.Draw(image)
    lines = _wrap(probe, text, font, max(1, image.width - 2 * padding))
    ascent, descent = font.getmetrics()
    line_h = ascent + descent
    bar = len(lines) * line_h + 2 * padding
    _check_size(image.width, image.height + bar)
    fill = parse_color
    out = Image.new(image.mode, (image.width, image.height + bar), fill(background, image.mode))
    out.paste(image, (0, bar if position == "top" else 0))
    draw = ImageDraw.Draw(out)
    y = (0 if position == "top" else image.height) + padding
    for line in lines:
        x = max(padding, (image.width - draw.textlength(line, font=font)) / 2)
        draw.text((x, y), line, font=font, fill=fill(color, image.mode))
        y += line_h
    return out


OPS = {"resize": resize, "crop": crop, "pad": pad, "rotate": rotate, "flip": flip, "caption": caption}


def apply(image, name: str, params: dict):
    return OPS[name](image, **params)


def save(image, path: Path, fmt: str = "png", quality: int = 90, meta: dict | None = None) -> None:
    """Save as PNG (with a ``pixelmill`` text chunk holding ``meta``), JPEG or WebP."""
    if fmt == "png":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        if meta:
            info.add_text("pixelmill", json.dumps(meta, sort_keys=True, default=str))
        image.save(path, format="PNG", pnginfo=info)
    elif fmt == "jpeg":
        image.convert("RGB").save(path, format="JPEG", quality=quality)
    else:
        image.save(path, format="WEBP", quality=quality)
