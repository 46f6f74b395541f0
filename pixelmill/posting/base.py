"""The target interface and the data a post is made of."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pixelmill.node import NoRetry


class PostingError(Exception):
    """A post failed. ``definitive`` is True when the platform answered, so nothing was posted."""

    def __init__(self, message: str, *, status: int | None = None, definitive: bool = True):
        super().__init__(message)
        self.status = status
        self.definitive = definitive
        # a definitive refusal (4xx other than 429) will be refused again: the step is not retried
        self.retryable = not (definitive and status is not None and 400 <= status < 500 and status != 429)


class RateLimited(PostingError, NoRetry):
    """The platform asks to wait longer than ``max_retry_wait``: not retried, not by the step either."""

    def __init__(self, message: str, *, status: int, wait_s: float):
        super().__init__(message, status=status)
        self.wait_s = wait_s
        self.retryable = False


class AmbiguousDelivery(PostingError):
    """The request may have reached the platform (timeout, dropped connection): outcome unknown."""

    def __init__(self, message: str):
        super().__init__(message, definitive=False)


class PreflightError(PostingError):
    """The post breaks a platform limit that cannot be fixed; raised before any request."""

    def __init__(self, target: str, problems: list[str]):
        self.problems = problems
        lines = "; ".join(problems)
        super().__init__(f"pre-flight check for {target} failed (nothing was sent): {lines}")
        self.retryable = False


@dataclass
class PostImage:
    """One attachment: an image or (``media_type`` video/...) a video, with its file for the video checks."""

    data: bytes
    media_type: str
    width: int
    height: int
    alt: str
    filename: str
    changes: list[str] = field(default_factory=list)
    duration_s: float | None = None  # videos
    path: Path | None = None         # videos: the file pre-flight decodes

    @property
    def is_video(self) -> bool:
        return self.media_type.startswith("video/")


@dataclass
class Post:
    """What gets posted, after pre-flight: final text, images with alt text, and context for payloads."""

    text: str
    images: list[PostImage]
    caption: str | None = None
    labels: Any = None
    run_id: str = ""
    workflow: str = ""
    step_id: str = ""
    artifact_names: list[str] = field(default_factory=list)
    image_refs: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Keys:
    """Deterministic per (original run, step, target): they make a repeated send land on the same post."""

    idempotency_key: str
    rkey: str
    slot: str  # short, file-name safe


@dataclass
class Delivery:
    remote_id: str | None
    url: str | None
    detail: dict = field(default_factory=dict)


@dataclass
class Limits:
    """A platform's limits, checked (and where possible fixed) before anything is sent."""

    max_images: int | None = 4
    max_image_bytes: int | None = None
    max_pixels: int | None = None
    max_side: int | None = None
    media_types: tuple[str, ...] = ("image/jpeg", "image/png", "image/webp", "image/gif")
    max_text: int | None = None
    count_text: Callable[[str], int] = len
    text_unit: str = "characters"
    max_text_bytes: int | None = None  # UTF-8 bytes (Bluesky: 3,000 besides the 300 graphemes)
    max_alt: int | None = None
    count_alt: Callable[[str], int] = len
    needs_image_url: bool = False
    # videos: none accepted unless video_types is set; no_video says why and what to do instead
    video_types: tuple[str, ...] = ()
    no_video: str = "does not take videos"
    max_videos: int | None = 1
    video_with_images: bool = True
    max_video_bytes: int | None = None
    max_video_s: float | None = None
    max_video_pixels: int | None = None
    max_video_fps: float | None = None
    max_video_alt: int | None = None  # when a video's alt text has its own limit
    video_codecs: tuple[str, ...] | None = ("h264",)  # None: any codec
    video_pix_fmts: tuple[str, ...] | None = ("yuv420p", "yuvj420p")


class Target:
    """One place to post to. Subclasses set ``kind`` and implement the methods below."""

    kind: ClassVar[str] = ""
    # True when re-sending after an unknown outcome cannot create a second post (idempotency key,
    # record key, atomic folder); otherwise the node refuses to re-send an unconfirmed post.
    dedupes: ClassVar[bool] = True
    # How long the platform remembers a request for deduplication (None: forever).
    dedupe_window_s: ClassVar[float | None] = None

    def limits(self) -> Limits:
        raise NotImplementedError

    def identity(self) -> str:
        """Stable name of the destination (no secrets): part of the ledger key."""
        raise NotImplementedError

    def describe(self, post: Post, keys: Keys) -> list[dict]:
        """The requests ``send`` would make (for ``dry_run``), with credentials masked."""
        raise NotImplementedError

    def send(self, post: Post, keys: Keys, *, resume: bool) -> Delivery:
        """Post it. ``resume`` is True when an earlier attempt may already have created the post."""
        raise NotImplementedError

    def limits_for(self, post: Post, limits: Limits) -> tuple[Limits, list[str]]:
        """The limits for this very post (a target may read them from the platform), and notes about that."""
        return limits, []
