"""What a run leaves behind: its events, and the error record of a failed step.

Every event is redacted (secrets and values derived from them), recorded in the run store (which gives
it its sequence number), then published on the bus. A failed step's error names the step, its node and
the cause; a policy block or a bad rendered input is not a bug, so it carries no traceback.
"""

from __future__ import annotations

import logging
import time
import traceback

from ..events import Event, EventBus, EventKind
from ..node import Blocked
from ..status import StepStatus
from ..store import RunStore
from .state import RunState, StepFailure, StepResult

log = logging.getLogger("pixelmill.executor")


class Recorder:
    def __init__(self, store: RunStore, bus: EventBus):
        self.store = store
        self.bus = bus

    def emit(self, run: RunState, kind: EventKind, step_id: str | None = None, **data) -> None:
        data = run.secrets.redact(data)
        event = Event(kind, run.run_id, step_id, data)
        event_id = self.store.record(event)
        self.bus.publish(Event(kind, run.run_id, step_id, data, event.ts, event_id))

    def step_failed(self, run: RunState, sid: str, exc: BaseException, attempts: int, t0: float,
                    status: StepStatus = StepStatus.FAILED, inputs=None, info=None, extra=None) -> StepResult:
        info = info or run.loaded.nodes[sid]
        error = {
            "step_id": sid,
            "node": info.type,
            "type": type(exc).__name__,
            "message": f"step '{sid}' ({info.type}) failed: {exc}",
            # a policy block or a bad rendered input is not a bug: no traceback in the audit trail
            "traceback": "" if isinstance(exc, (StepFailure, Blocked)) else "".join(traceback.format_exception(exc)),
        }
        if isinstance(exc, Blocked):
            error.update(message=f"step '{sid}' ({info.type}) blocked the run: {exc}", rule=exc.rule,
                         category=exc.category)
        error = run.secrets.redact(error)
        result = StepResult(status, None, error, attempts, time.perf_counter() - t0)
        data = dict(status=status.value, error=error, attempts=attempts, duration_s=round(result.duration_s, 6),
                    node=info.type, version=info.version, inputs=inputs, **(extra or {}))
        try:
            self.emit(run, EventKind.STEP_FAILED, sid, **data)
        except Exception:  # noqa: BLE001 - e.g. inputs the store cannot take: record the failure without them
            log.exception("run %s step %s: could not record the failure in full", run.run_id, sid)
            self.emit(run, EventKind.STEP_FAILED, sid, **{**data, "inputs": None,
                                                           "error": {**error, "traceback": ""}})
        return result
