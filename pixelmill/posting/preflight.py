"""Pre-flight: check a post against a platform's limits before any request, fix what can be fixed.

Fixable: too many pixels or too large a side (resize), too many bytes (recompress to JPEG, then
downscale), text or alt text too long (cut at a word with an ellipsis, when ``allow_truncate``).
Not fixable: too many images, a missing alt text, an unsupported or unreadable image. Every problem
is listed in one ``PreflightError`` so a user fixes them all at once.
"""

from __future__ import annotations

import io
import re
from dataclasses import replace

import regex
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from .base import Limits, Post, PostImage, PreflightError

ELLIPSIS = "…"
_URL = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
_MENTION = re.compile(r"(@[A-Za-z0-9_]+)@[A-Za-z0-9.\-]+[A-Za-z0-9]")
_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif",
            "AVIF": "image/avif", "HEIF": "image/heic"}
_QUALITIES = (92, 85, 78, 70, 62, 55, 48, 40)


def graphemes(text: str) -> int:
    """User-perceived characters (extended grapheme clusters), as Bluesky counts its 300."""
    return len(regex.findall(r"\X", text))


def mastodon_length(text: str) -> int:
    """Mastodon's count: every URL is 23 characters, a remote mention counts without its domain."""
    text = _URL.sub("x" * 23, text)
    text = _MENTION.sub(r"\1", text)
    return graphemes(text)


def compose_text(text: str, disclosure: str | None) -> tuple[str, str]:
    """The body and the disclosure suffix (added once, on its own paragraph)."""
    text = (text or "").strip()
    disclosure = (disclosure or "").strip()
    if not disclosure or disclosure.lower() in text.lower():
        return text, ""
    return text, ("\n\n" if text else "") + disclosure


def truncate_to(text: str, suffix: str, limit: int, count) -> str | None:
    """Longest prefix of ``text`` (cut at a space where possible) + ellipsis + suffix within ``limit``."""
    if count(text + suffix) <= limit:
        return text + suffix
    clusters = regex.findall(r"\X", text)
    lo, hi = 0, len(clusters)
    while lo < hi:  # largest n with count(prefix(n) + ELLIPSIS + suffix) <= limit
        mid = (lo + hi + 1) // 2
        if count("".join(clusters[:mid]).rstrip() + ELLIPSIS + suffix) <= limit:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        return None
    cut = "".join(clusters[:lo])
    space = cut.rfind(" ")
    if space >= len(cut) * 0.6:  # prefer a word boundary unless it throws away too much
        cut = cut[:space]
    return cut.rstrip() + ELLIPSIS + suffix


def alt_with_suffix(alt: str, suffix: str | None) -> str:
    alt = (alt or "").strip()
    suffix = (suffix or "").strip()
    if not suffix or suffix.lower() in alt.lower():
        return alt
    return f"{alt} {suffix}" if alt else suffix


def read_image(data: bytes, name: str) -> tuple[str, int, int]:
    """(media type, width, height) of an image; ValueError naming the file when it is not one."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format or ""
            width, height = im.size
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"'{name}' is not a readable image ({exc})") from None
    return _FORMATS.get(fmt, f"image/{fmt.lower()}" if fmt else "application/octet-stream"), width, height


def is_video(data: bytes) -> bool:
    """An ISO BMFF file (MP4, MOV): an ``ftyp`` box first."""
    return len(data) >= 12 and data[4:8] == b"ftyp"


def read_video(path, name: str) -> tuple[str, int, int, float]:
    """(media type, width, height, seconds) of an MP4/MOV; ValueError naming the file when it does not decode."""
    import av

    with open(path, "rb") as fh:
        head = fh.read(12)
    try:  # the container's header is enough here; pre-flight decodes the frames (check_video)
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if stream.duration is not None and stream.time_base:
                seconds = float(stream.duration * stream.time_base)
            else:
                seconds = (container.duration or 0) / av.time_base
    except Exception as exc:  # noqa: BLE001 - any decoder error: not a video we can post
        raise ValueError(f"'{name}' is not a readable video ({exc})") from None
    media_type = "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
    return media_type, int(width), int(height), round(seconds, 3)


def _check_video(img: PostImage, limits: Limits, label: str, target: str) -> str | None:
    """None when the video fits ``limits``; else what is wrong and what to change (videos are not re-encoded)."""
    from pixelmill.video.preflight import VideoRejected, check_video

    if img.path is None:
        return f"{label}: the video file is not at hand for the checks"
    try:
        check_video(img.path, max_bytes=limits.max_video_bytes, max_duration_s=limits.max_video_s,
                    codecs=limits.video_codecs, pix_fmts=limits.video_pix_fmts, target=target,
                    max_pixels=limits.max_video_pixels, max_fps=limits.max_video_fps)
    except VideoRejected as exc:
        return f"{label}: {exc}"
    return None


def _metadata(im: Image.Image) -> dict:
    """What must survive re-encoding: the XMP packet (IPTC DigitalSourceType label) and EXIF."""
    xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    return {"xmp": xmp, "exif": im.info.get("exif"), "text": dict(getattr(im, "text", {}) or {})}


def _encode(im: Image.Image, fmt: str, meta: dict, quality: int = 90) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG":
        if im.mode not in ("RGB", "L"):
            rgba = im.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            im = flat
        kwargs = {"quality": quality, "optimize": True}
        if meta.get("xmp"):
            kwargs["xmp"] = meta["xmp"]
        if meta.get("exif"):
            kwargs["exif"] = meta["exif"]
        im.save(out, "JPEG", **kwargs)
    elif fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        for key, value in meta.get("text", {}).items():
            if key != "XML:com.adobe.xmp" and isinstance(value, str):
                info.add_itxt(key, value)
        if meta.get("xmp"):
            info.add_itxt("XML:com.adobe.xmp", meta["xmp"].decode("utf-8", "replace"))
        kwargs = {"pnginfo": info, "optimize": True}
        if meta.get("exif"):
            kwargs["exif"] = meta["exif"]
        im.save(out, "PNG", **kwargs)
    else:
        kwargs = {"quality": quality}
        if meta.get("xmp"):
            kwargs["xmp"] = meta["xmp"]
        im.save(out, fmt, **kwargs)
    return out.getvalue()


def fit_image(img: PostImage, limits: Limits) -> PostImage | str:
    """A copy of ``img`` within the limits, or a message saying why it cannot be made to fit."""
    needs_resize = ((limits.max_pixels and img.width * img.height > limits.max_pixels)
                    or (limits.max_side and max(img.width, img.height) > limits.max_side))
    too_big = limits.max_image_bytes is not None and len(img.data) > limits.max_image_bytes
    if not needs_resize and not too_big:
        return img
    if img.media_type == "image/gif":
        return (f"image '{img.filename}' is a GIF of {len(img.data):,} bytes / {img.width}x{img.height}; "
                "GIFs are not recompressed: make it smaller")
    with Image.open(io.BytesIO(img.data)) as src:
        src.load()
        meta = _metadata(src)
        im = src.copy()
        fmt = src.format or "PNG"
    changes = list(img.changes)
    scale = 1.0
    if limits.max_pixels and im.width * im.height > limits.max_pixels:
        scale = min(scale, (limits.max_pixels / (im.width * im.height)) ** 0.5)
    if limits.max_side and max(im.width, im.height) > limits.max_side:
        scale = min(scale, limits.max_side / max(im.width, im.height))
    if scale < 1.0:
        size = (max(1, int(im.width * scale)), max(1, int(im.height * scale)))
        changes.append(f"resized from {im.width}x{im.height} to {size[0]}x{size[1]}")
        im = im.resize(size, Image.Resampling.LANCZOS)
    data = _encode(im, fmt, meta) if fmt in ("PNG", "JPEG", "WEBP") else _encode(im, "PNG", meta)
    media_type = _FORMATS.get(fmt, "image/png")
    cap = limits.max_image_bytes
    if cap is not None and len(data) > cap:
        original = len(img.data)
        data = None
        for _ in range(8):  # JPEG quality ladder, then shrink by 15% and try again
            for q in _QUALITIES:
                candidate = _encode(im, "JPEG", meta, q)
                if len(candidate) <= cap:
                    data = candidate
                    changes.append(f"recompressed as JPEG quality {q}: {original:,} -> {len(data):,} bytes "
                                   f"(limit {cap:,})")
                    break
            if data is not None:
                break
            size = (max(1, int(im.width * 0.85)), max(1, int(im.height * 0.85)))
            changes.append(f"downscaled to {size[0]}x{size[1]} to fit {cap:,} bytes")
            im = im.resize(size, Image.Resampling.LANCZOS)
        if data is None:
            return f"image '{img.filename}' could not be brought under {cap:,} bytes"
        media_type = "image/jpeg"
    filename = img.filename
    if media_type == "image/jpeg" and not filename.lower().endswith((".jpg", ".jpeg")):
        filename = filename.rsplit(".", 1)[0] + ".jpg"
    return PostImage(data, media_type, im.width, im.height, img.alt, filename, changes)


def check(post: Post, limits: Limits, *, target: str, allow_truncate: bool, disclosure: str | None,
          require_alt: bool, alt_limit_text: str = "alt text") -> tuple[Post, list[str]]:
    """Check and fix ``post`` (its text without disclosure) for ``limits``; returns (post, what was changed)."""
    problems: list[str] = []
    notes: list[str] = []
    if limits.max_images is not None and len(post.images) > limits.max_images:
        problems.append(f"{len(post.images)} images, {target} allows at most {limits.max_images} a post")
    if not post.text.strip() and not post.images and not (disclosure or "").strip():
        problems.append("nothing to post: the text is empty and there are no images")
    if limits.needs_image_url and post.images and not all(r.get("url") for r in post.image_refs):
        problems.append(f"{target} can only show images by URL: set config 'image_base_url' "
                        "(or post without images)")
    body, suffix = compose_text(post.text, disclosure)
    text = body + suffix
    if limits.max_text is not None:
        max_bytes = limits.max_text_bytes

        def count(t: str) -> int:  # a text over the byte cap counts as over the length limit
            n = limits.count_text(t)
            return n if max_bytes is None or len(t.encode("utf-8")) <= max_bytes else max(n, limits.max_text + 1)

        length, nbytes = limits.count_text(text), len(text.encode("utf-8"))
        if count(text) > limits.max_text:
            cut = truncate_to(body, suffix, limits.max_text, count) if allow_truncate else None
            over = (f"text is {length} {limits.text_unit}, {target} allows {limits.max_text}"
                    if length > limits.max_text else
                    f"text is {nbytes:,} bytes of UTF-8, {target} allows {max_bytes:,}")
            if cut is not None:
                notes.append(f"{over}: cut to {limits.count_text(cut)} {limits.text_unit}")
                text = cut
            elif allow_truncate:
                problems.append(f"the disclosure alone is longer than {target} allows")
            else:
                problems.append(f"{over}; shorten it or set config 'allow_truncate: true'")
    videos = [img for img in post.images if img.is_video]
    if videos and limits.video_types:
        if limits.max_videos is not None and len(videos) > limits.max_videos:
            problems.append(f"{len(videos)} videos, {target} allows at most {limits.max_videos} a post")
        if not limits.video_with_images and len(videos) < len(post.images):
            problems.append(f"{target} cannot attach a video to a post that has images: post the video alone "
                            "(or the images without it)")
    images: list[PostImage] = []
    for i, img in enumerate(post.images, 1):
        label = f"{'video' if img.is_video else 'image'} {i} ('{img.filename}')"
        if img.is_video and img.media_type not in limits.video_types:
            problems.append(f"{label} is a video ({img.media_type}); {target} {limits.no_video}")
            continue
        if not img.is_video and img.media_type not in limits.media_types:
            problems.append(f"{label} is {img.media_type}; {target} takes {', '.join(limits.media_types)}")
            continue
        alt = img.alt
        if require_alt and not alt.strip():
            problems.append(f"{label} has no alt text: pass 'alt_text' or 'caption' to the step")
        max_alt = limits.max_video_alt if img.is_video and limits.max_video_alt else limits.max_alt
        if max_alt is not None and limits.count_alt(alt) > max_alt:
            n = limits.count_alt(alt)
            cut = truncate_to(alt, "", max_alt, limits.count_alt) if allow_truncate else None
            if cut is None:
                problems.append(f"{label} {alt_limit_text} is {n} characters, {target} allows {max_alt}")
            else:
                notes.append(f"{label} alt text cut from {n} to {limits.count_alt(cut)} characters")
                alt = cut
        if img.is_video:  # never re-encoded here: what is posted is the labelled file, byte for byte
            problem = _check_video(img, limits, label, target)
            if problem:
                problems.append(problem)
            else:
                images.append(replace(img, alt=alt))
            continue
        fitted = fit_image(PostImage(img.data, img.media_type, img.width, img.height, alt, img.filename,
                                     list(img.changes)), limits)
        if isinstance(fitted, str):
            problems.append(fitted)
            continue
        notes.extend(f"{label} {c}" for c in fitted.changes[len(img.changes):])
        images.append(fitted)
    if problems:
        raise PreflightError(target, problems)
    fixed = Post(text=text, images=images, caption=post.caption, labels=post.labels, run_id=post.run_id,
                 workflow=post.workflow, step_id=post.step_id, artifact_names=list(post.artifact_names),
                 image_refs=list(post.image_refs))
    return fixed, notes
