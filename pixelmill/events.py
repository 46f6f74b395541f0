"""Run events: what the store, the CLI and the server subscribe to."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from enum import Enum

log = logging.getLogger(__name__)


class EventKind(str, Enum):
    RUN_QUEUED = "run.queued"
    RUN_STARTED = "run.started"
    STEP_STARTED = "step.started"
    STEP_PROGRESS = "step.progress"
    STEP_RETRYING = "step.retrying"
    STEP_FINISHED = "step.finished"
    STEP_FAILED = "step.failed"
    STEP_SKIPPED = "step.skipped"
    RUN_FINISHED = "run.finished"


@dataclass(frozen=True)
class Event:
    kind: EventKind
    run_id: str
    step_id: str | None = None
    data: dict = field(default_factory=dict)
    ts: float = field(default_factory=time.time)
    id: int | None = None  # the store's sequence number, once recorded

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind.value, "run_id": self.run_id, "step_id": self.step_id,
                "data": self.data, "ts": self.ts}


class EventBus:
    """Synchronous fan-out; a failing subscriber is logged and never breaks a run."""

    def __init__(self) -> None:
        self._subscribers: list = []
        self._lock = threading.Lock()

    def subscribe(self, callback):
        with self._lock:
            self._subscribers = self._subscribers + [callback]

        def unsubscribe():
            with self._lock:
                self._subscribers = [s for s in self._subscribers if s is not callback]

        return unsubscribe

    def publish(self, event: Event) -> None:
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber %r failed on %s", callback, event.kind.value)
