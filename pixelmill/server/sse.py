"""Server-Sent Events per run: replay from the store after ``Last-Event-ID`` (or ``?after=``), then live
events as they are recorded, with heartbeat comments; the stream ends after ``run.finished``.

The bus only wakes the stream; events are always read from the store in id order, so parallel steps
publishing out of order cannot make a client miss one.
"""

from __future__ import annotations

import json
import threading

from flask import Blueprint, Response, request, stream_with_context

from ..events import EventKind
from . import schemas as s
from .auth import require_bearer
from .context import NOT_FOUND, current_service, run_or_404
from .http import ApiError, endpoint

bp = Blueprint("sse", __name__, url_prefix="/api/v1")
require_bearer(bp)


def _format(ev) -> str:
    data = json.dumps(ev.to_dict(), default=str, separators=(",", ":"))
    return f"id: {ev.id}\nevent: {ev.kind.value}\ndata: {data}\n\n"


def _after() -> int:
    """The id to replay after: ``Last-Event-ID`` when the header is sent (even empty: then it is wrong),
    else ``?after=``, else 0."""
    raw = request.headers.get("Last-Event-ID")
    if raw is None:
        raw = request.args.get("after", "0")
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise ApiError(400, "invalid_last_event_id",
                       f"Last-Event-ID must be an event id (up to 18 digits), not {raw[:40]!r}") from None
    value = int(raw)
    if value < 0 or value > 2**62:
        raise ApiError(400, "invalid_last_event_id", f"Last-Event-ID {value} is out of range")
    return value


@endpoint(bp, "/runs/<run_id>/events", "GET", summary="Live events of a run (text/event-stream)", tag="runs",
          responses={200: "text/event-stream", 400: s.ErrorOut, **NOT_FOUND})
def run_events(run_id: str):
    svc = current_service()
    run = run_or_404(svc, run_id)
    return event_stream(svc, run, _after())


def event_stream(svc, run: dict, last: int, *, end_marker: bool = False, cache: str = "no-cache") -> Response:
    """The stored events of ``run`` after id ``last``, then live ones, ending after ``run.finished``
    (the API's stream and the dashboard's). ``end_marker``: a run that finished without a replayed
    ``run.finished`` ends with an ``end`` event instead of a silent close."""
    run_id = run["id"]
    store, bus = svc.runtime.store, svc.runtime.bus
    heartbeat = float(svc.config.sse_heartbeat)
    wake = threading.Event()

    def on_event(ev):
        if ev.run_id == run_id:
            wake.set()

    unsubscribe = bus.subscribe(on_event)  # before the replay, so nothing falls between the two

    def stream(last=last):
        try:
            yield "retry: 2000\n\n"
            finished = run["status"] not in ("queued", "running")
            while True:
                wake.clear()
                while True:
                    batch = store.events(run_id, after=last, limit=500)
                    for ev in batch:
                        yield _format(ev)
                        last = ev.id
                        if ev.kind is EventKind.RUN_FINISHED:
                            return
                    if len(batch) < 500:
                        break
                if finished:
                    if end_marker:
                        yield "event: end\ndata: {}\n\n"
                    return  # a finished run whose end was replayed earlier
                if not wake.wait(heartbeat):
                    yield ": heartbeat\n\n"
                    current = store.get_run(run_id)
                    finished = current is None or current["status"] not in ("queued", "running")
        finally:
            unsubscribe()

    headers = {"Cache-Control": cache, "X-Accel-Buffering": "no"}
    return Response(stream_with_context(stream()), mimetype="text/event-stream", headers=headers)


def init_app(app) -> None:
    app.register_blueprint(bp)
