"""Posting to social platforms: one ``Target`` interface, one small module per platform.

``base`` holds the interface and the post data, ``preflight`` the per-platform checks and fixes,
``http`` the retrying HTTP calls, ``ledger`` the exactly-once table in the run store, and
``outbox``, ``mastodon``, ``bluesky`` and ``webhook`` the targets. The ``post_social`` node
(``pixelmill_nodes.post_social``) wires them together.
"""

from .base import (
    AmbiguousDelivery,
    Delivery,
    Keys,
    Limits,
    Post,
    PostImage,
    PostingError,
    PreflightError,
    RateLimited,
    Target,
)

__all__ = ["AmbiguousDelivery", "Delivery", "Keys", "Limits", "Post", "PostImage", "PostingError",
           "PreflightError", "RateLimited", "Target"]
