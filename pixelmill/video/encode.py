"""Encode RGB frames: H.264 ``yuv420p`` MP4 through PyAV (plays in browsers and on Mastodon), GIF/WebP
through Pillow."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import numpy as np


def even(n: int) -> int:
    """H.264 with 4:2:0 chroma needs even width and height."""
    return max(2, n - (n % 2))


def fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def write_mp4(frames: Iterable[np.ndarray], path: Path, fps: float | Fraction, *, crf: int = 20,
              preset: str = "medium", on_frame: Callable[[int], None] | None = None,
              metadata: dict[str, str] | None = None) -> int:
    """Write HxWx3 uint8 RGB frames (all one size, even) as H.264 yuv420p MP4; returns the frame count.
    ``metadata``: container tags (title, comment, description, ...; the MP4 ``udta`` box)."""
    import av

    rate = fps if isinstance(fps, Fraction) else fps_fraction(fps)
    count = 0
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        if metadata:
            container.metadata.update(metadata)
        stream = None
        for arr in frames:
            if stream is None:
                h, w = arr.shape[:2]
                if w % 2 or h % 2:
                    raise ValueError(f"frame size {w}x{h} is odd: H.264 yuv420p needs even width and height")
                stream = container.add_stream("libx264", rate=rate)
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                stream.codec_context.time_base = 1 / rate
                stream.options = {"crf": str(crf), "preset": preset}
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            frame.pts = count
            for packet in stream.encode(frame):
                container.mux(packet)
            count += 1
            if on_frame is not None:
                on_frame(count)
        if stream is None:
            raise ValueError("no frames to encode")
        for packet in stream.encode():
            container.mux(packet)
    return count


def write_animation(frames: Iterable[np.ndarray], path: Path, fps: float, fmt: str, *, quality: int = 80) -> int:
    """Animated GIF or WebP (``fmt``: 'gif' or 'webp'), looping forever; returns the frame count."""
    from PIL import Image

    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    if not images:
        raise ValueError("no frames to encode")
    duration = max(1, round(1000 / fps))
    if fmt == "gif":
        # a fast octree palette per frame (median cut takes ~0.5 s a 256 px frame)
        images = [im.quantize(colors=256, method=Image.Quantize.FASTOCTREE) for im in images]
        images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0,
                       disposal=1, optimize=False)
    elif fmt == "webp":
        images[0].save(path, format="WEBP", save_all=True, append_images=images[1:], duration=duration, loop=0,
                       quality=quality)
    else:
        raise ValueError(f"unknown animation format '{fmt}' (gif or webp)")
    return len(images)


def probe(path: Path) -> dict:
    """Codec, pixel format, size, frame count, fps and duration of a video file, read by decoding it."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        rate = stream.average_rate or stream.guessed_rate
        return {"codec": stream.codec_context.name, "pix_fmt": stream.codec_context.pix_fmt,
                "width": stream.codec_context.width, "height": stream.codec_context.height, "frames": frames,
                "fps": float(rate) if rate else 0.0,
                "duration_s": frames / float(rate) if rate else 0.0}


@contextmanager
def read_frames(path: Path) -> Iterator[tuple[Iterator[np.ndarray], Fraction, dict]]:
    """``with read_frames(path) as (frames, rate, info)``: the RGB frames of a video (decoded as they are
    read), its frame rate and facts about it: ``frames`` (from the container, 0 when unknown), ``audio``
    (number of audio streams), ``metadata`` (the container tags), ``width``, ``height``. The file is closed
    when the block ends."""
    import av

    container = av.open(str(path))
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(24)
        info = {"frames": stream.frames, "audio": len(container.streams.audio),
                "metadata": dict(container.metadata), "width": stream.codec_context.width,
                "height": stream.codec_context.height}
        frames = (frame.to_ndarray(format="rgb24") for frame in container.decode(stream))
        yield frames, Fraction(rate), info
    finally:
        container.close()
