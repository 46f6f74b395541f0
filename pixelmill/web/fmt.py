"""Small formatting helpers, registered as jinja filters."""

from __future__ import annotations

import json
from datetime import datetime


def when(value: str | None) -> str:
    """'2026-11-27 15:58:07' (UTC) from a stored ISO time."""
    if not value:
        return "—"
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    value = float(value)
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(round(value)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def size(value: int | None) -> str:
    if value is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(value)


def pretty(value) -> str:
    """JSON for display (indented, non-ASCII kept)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=False)


def scalar(value) -> str:
    """A value in a table cell: strings as they are, the rest as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


FILTERS = {"when": when, "seconds": seconds, "size": size, "pretty": pretty, "scalar": scalar}
