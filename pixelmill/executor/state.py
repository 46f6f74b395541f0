"""A run in progress and what callers get back.

``RunState`` (one per run being executed) holds the loaded workflow, the run's inputs, trigger, secrets,
cancel flag and the step results so far, and builds the context its expressions see. ``StepResult`` and
``RunResult`` are what ``Executor.execute`` returns; ``StepFailure`` and ``StepTimeout`` are the
executor's own reasons for a step to fail.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field

from ..loader import LoadedWorkflow
from ..secrets import Secrets
from ..status import RunStatus, StepStatus


class StepTimeout(Exception):
    pass


class StepFailure(Exception):
    """A step failed for a reason that retrying cannot fix (bad rendered input, missing secret)."""


@dataclass
class StepResult:
    status: StepStatus
    outputs: dict | None = None
    error: dict | None = None
    attempts: int = 0
    duration_s: float = 0.0

    @classmethod
    def from_row(cls, row: dict) -> StepResult:
        """A result stored before the run's process died (a resumed run keeps it as it is)."""
        return cls(StepStatus(row["status"]), row.get("outputs") or {}, None, row.get("attempts") or 0,
                   row.get("duration_s") or 0.0)


@dataclass
class RunResult:
    run_id: str
    workflow: str
    status: RunStatus
    outputs: dict = field(default_factory=dict)
    steps: dict[str, StepResult] = field(default_factory=dict)
    error: dict | None = None


@dataclass
class RunState:
    loaded: LoadedWorkflow
    run_id: str
    inputs: dict
    trigger: dict
    secrets: Secrets
    cancel: threading.Event
    results: dict[str, StepResult] = field(default_factory=dict)
    resumed_items: dict[str, dict[int, dict]] = field(default_factory=dict)  # for_each items finished before a crash
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))

    def context(self, secret_names=()) -> dict:
        steps = {sid: {"outputs": r.outputs or {}, "status": r.status.value} for sid, r in self.results.items()}
        return {
            "inputs": self.inputs,
            "trigger": self.trigger,
            "steps": steps,
            "secrets": {name: self.secrets.get(name) for name in secret_names},
            "run": {"id": self.run_id, "workflow": self.loaded.name},
            "now": self.now,
            "today": self.now.date().isoformat(),
        }
