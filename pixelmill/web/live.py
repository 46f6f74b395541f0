"""The run page's event stream (Server-Sent Events): the stored events of one run after ``Last-Event-ID``,
then new ones as the executor records them, ending after ``run.finished``. Like the API's stream it reads
events from the store in id order and uses the event bus only as a wake-up, so nothing is missed; it is
served under the dashboard's session instead of the API's bearer token."""

from __future__ import annotations

import json
import threading

from flask import Response, request, stream_with_context

FINISHED = "run.finished"


def _after() -> int:
    raw = request.headers.get("Last-Event-ID") or request.args.get("after") or "0"
    try:
        return min(max(0, int(raw)), 2**62)
    except ValueError:
        return 0


def stream(svc, run: dict) -> Response:
    run_id = run["id"]
    store, bus = svc.runtime.store, svc.runtime.bus
    heartbeat = float(getattr(svc.config, "sse_heartbeat", 15.0))
    wake = threading.Event()

    def on_event(ev):
        if ev.run_id == run_id:
            wake.set()

    unsubscribe = bus.subscribe(on_event)  # before reading, so no event falls between read and wait
    last = _after()

    def gen(last=last):
        try:
            yield "retry: 2000\n\n"
            finished = run["status"] not in ("queued", "running")
            while True:
                wake.clear()
                while True:
                    batch = store.events(run_id, after=last, limit=500)
                    for ev in batch:
                        data = json.dumps(ev.to_dict(), default=str, separators=(",", ":"))
                        yield f"id: {ev.id}\nevent: {ev.kind.value}\ndata: {data}\n\n"
                        last = ev.id
                        if ev.kind.value == FINISHED:
                            return
                    if len(batch) < 500:
                        break
                if finished:
                    yield "event: end\ndata: {}\n\n"
                    return
                if not wake.wait(heartbeat):
                    yield ": heartbeat\n\n"
                    current = store.get_run(run_id)
                    finished = current is None or current["status"] not in ("queued", "running")
        finally:
            unsubscribe()

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return Response(stream_with_context(gen()), mimetype="text/event-stream", headers=headers)
