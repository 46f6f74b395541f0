"""The run page's event stream (Server-Sent Events): the API's stream (``server.sse.event_stream``: stored
events in id order, the bus only as a wake-up, ending after ``run.finished``), served under the dashboard's
session instead of the API's bearer token, with a lenient ``Last-Event-ID``."""

from __future__ import annotations

from flask import Response, request

from ..server.sse import event_stream


def _after() -> int:
    raw = request.headers.get("Last-Event-ID") or request.args.get("after") or "0"
    try:
        return min(max(0, int(raw)), 2**62)
    except ValueError:
        return 0


def stream(svc, run: dict) -> Response:
    return event_stream(svc, run, _after(), end_marker=True, cache="no-store")
