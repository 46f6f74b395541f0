"""One log line per run start and end: id, workflow, trigger, status, duration (and the failing step's
error, already redacted by the executor)."""

from __future__ import annotations

import logging
import threading

from sqlalchemy import select

from ..db import RunRow
from ..events import Event, EventKind

log = logging.getLogger("pixelmill.runs")


class RunLog:
    def __init__(self, store):
        self.store = store
        self._runs: dict[str, tuple[str, str]] = {}  # run id -> (workflow, trigger kind), while it runs
        self._lock = threading.Lock()

    def _lookup(self, run_id: str) -> tuple[str, str]:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(RunRow.workflow, RunRow.trigger_kind).where(RunRow.id == run_id)).first()
        return (row[0], row[1]) if row else ("?", "?")

    def on_event(self, event: Event) -> None:
        d = event.data
        if event.kind is EventKind.RUN_STARTED:
            workflow, kind = self._lookup(event.run_id)
            with self._lock:
                self._runs[event.run_id] = (workflow, kind)
            log.info("run %s started: workflow=%s trigger=%s", event.run_id, workflow, kind)
        elif event.kind is EventKind.RUN_FINISHED:
            with self._lock:
                known = self._runs.pop(event.run_id, None)
            workflow, kind = known or self._lookup(event.run_id)
            status = d.get("status", "?")
            duration = d.get("duration_s")
            took = f"{duration:.3f}s" if isinstance(duration, int | float) else "?"
            line = f"run {event.run_id} finished: workflow={workflow} trigger={kind} status={status} duration={took}"
            if status == "succeeded":
                log.info("%s", line)
                return
            error = d.get("error") or {}
            where = f" step={error['step_id']}" if error.get("step_id") else ""
            log.warning("%s%s error=%s", line, where, str(error.get("message") or "")[:300])
