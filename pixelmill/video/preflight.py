"""Pre-flight checks of a video before it is posted: size, length, codec and pixel format, read by decoding.

A building block for posting targets: each target passes its own limits (Mastodon's are in
``GET /api/v2/instance`` ``configuration.media_attachments``; Bluesky's video service takes 300 MB / 10 min).
"""

from __future__ import annotations

from pathlib import Path

from .encode import probe

PLAYS_EVERYWHERE = {"codec": ("h264",), "pix_fmt": ("yuv420p", "yuvj420p")}


class VideoRejected(ValueError):
    """The video breaks a limit; the message says which and what to change. Retrying cannot help."""

    retryable = False


def check_video(path: Path, *, max_bytes: int | None = None, max_duration_s: float | None = None,
                codecs=PLAYS_EVERYWHERE["codec"], pix_fmts=PLAYS_EVERYWHERE["pix_fmt"], target: str = "",
                max_pixels: int | None = None, max_fps: float | None = None) -> dict:
    """-> the probe of ``path`` (codec, pix_fmt, width, height, frames, fps, duration_s, bytes) when it passes.
    ``codecs``/``pix_fmts``: None or empty accepts any; ``max_pixels``: width x height; ``max_fps``: frame rate."""
    where = f" for {target}" if target else ""
    size = Path(path).stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise VideoRejected(f"video {Path(path).name} is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.1f} MB "
                            f"limit{where}: lower make_video's fps or size, or raise crf")
    try:
        info = probe(path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the file cannot be posted
        raise VideoRejected(f"{Path(path).name} is not a readable video: {exc}") from None
    info["bytes"] = size
    if max_duration_s is not None and info["duration_s"] > max_duration_s + 1e-6:
        raise VideoRejected(f"video {Path(path).name} lasts {info['duration_s']:.1f} s, over the "
                            f"{max_duration_s:g} s limit{where}: use fewer frames or seconds_per_image")
    if codecs and info["codec"] not in codecs:
        raise VideoRejected(f"video {Path(path).name} is {info['codec']}, not {' or '.join(codecs)}{where}: "
                            "encode it with make_video format 'mp4' (H.264)")
    if pix_fmts and info["pix_fmt"] not in pix_fmts:
        raise VideoRejected(f"video {Path(path).name} has pixel format {info['pix_fmt']}, not "
                            f"{' or '.join(pix_fmts)}{where}")
    if max_pixels is not None and info["width"] * info["height"] > max_pixels:
        raise VideoRejected(f"video {Path(path).name} is {info['width']}x{info['height']}, over the "
                            f"{max_pixels:,}-pixel limit{where}: give make_video a smaller width and height")
    if max_fps is not None and info["fps"] > max_fps + 1e-6:
        raise VideoRejected(f"video {Path(path).name} runs at {info['fps']:g} fps, over the {max_fps:g} fps "
                            f"limit{where}: lower make_video's fps")
    return info
