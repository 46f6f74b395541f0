"""One step of a run: its condition, its inputs, the output cache, attempts with retries, its failure.

The ``if`` is evaluated first (false: the step is skipped). The ``with`` inputs are rendered and
validated against the node's ``Inputs`` model (a bad value fails the step, naming the input, without a
retry). A deterministic node's outputs come from the cache when its key matches. Otherwise the node runs
(``attempt.py``), again after a failure while ``retry`` allows, with backoff waits the run's cancel flag
cuts short. A ``for_each`` step goes to ``items.py``. Whatever goes wrong in the executor's own work
while running a step fails that step, not the whole run.
"""

from __future__ import annotations

import logging
import time

from pydantic import ValidationError

from .. import expressions as ex
from ..events import EventKind
from ..node import Blocked, Cancelled
from ..status import StepStatus
from ..store import RunStore
from . import items
from .attempt import Attempts
from .outputs import adopt_artifacts, artifacts_exist, cache_key, unstorable
from .record import Recorder
from .state import RunState, StepFailure, StepResult

log = logging.getLogger("pixelmill.executor")


class StepRunner:
    def __init__(self, store: RunStore, recorder: Recorder, attempts: Attempts, max_stored_bytes: int):
        self.store = store
        self.recorder = recorder
        self.attempts = attempts
        self.max_stored_bytes = max_stored_bytes

    def run(self, run: RunState, sid: str) -> StepResult:
        """The step's result; a failure of the executor's own work (recording, storing) fails the step."""
        t0 = time.perf_counter()
        try:
            return self._step(run, sid)
        except Exception as exc:  # noqa: BLE001
            log.exception("run %s step %s: unexpected error in the executor", run.run_id, sid)
            try:
                return self.recorder.step_failed(run, sid, exc, 0, t0)
            except Exception as again:  # noqa: BLE001 - cannot even record it: end the run
                again.step_id = sid
                raise again from exc

    def unstorable(self, value, what: str) -> str | None:
        """Why ``value`` cannot go into the run store (None if it can)."""
        return unstorable(value, what, self.max_stored_bytes)

    def _step(self, run: RunState, sid: str) -> StepResult:
        step = run.loaded.workflow.step(sid)
        info = run.loaded.nodes[sid]
        t0 = time.perf_counter()
        try:
            if step.if_ is not None and not self._condition(run, step):
                result = StepResult(StepStatus.SKIPPED)
                self.recorder.emit(run, EventKind.STEP_SKIPPED, sid, status="skipped", reason="condition is false",
                                   node=info.type, version=info.version)
                return result
            if step.for_each is not None:
                item_list = items.render_items(run, step)
            else:
                inputs, stored_inputs = self.inputs(run, step, info,
                                                    run.context(ex.referenced_secrets(step.with_)), sid)
        except (ex.ExpressionError, StepFailure, KeyError) as exc:
            return self.recorder.step_failed(run, sid, exc if isinstance(exc, StepFailure) else StepFailure(str(exc)),
                                             0, t0)
        if step.for_each is not None:
            return items.run_for_each(self, run, step, info, item_list, t0)
        return self.run_one(run, step, info, sid, inputs, stored_inputs, t0)

    def _condition(self, run: RunState, step) -> bool:
        value = step.if_
        if isinstance(value, bool):
            return value
        text = value if ex.OPEN in value else ex.OPEN + value + ex.CLOSE
        result = ex.render(text, run.context(ex.referenced_secrets(text)), run.secrets.taint)
        if isinstance(result, str):
            return result.strip().lower() not in ("", "false", "0", "no", "none")
        return bool(result)

    def inputs(self, run: RunState, step, info, context: dict, label: str):
        """Render and validate a step's (or one item's) inputs: the inputs model and what the store keeps."""
        rendered = ex.render(step.with_, context, run.secrets.taint)
        inputs = _validate_inputs(info.cls.Inputs, rendered, label)
        stored_inputs = run.secrets.redact(inputs.model_dump(mode="json"))
        problem = self.unstorable(stored_inputs, "its rendered inputs")
        if problem:
            raise StepFailure(problem)
        return inputs, stored_inputs

    def run_one(self, run: RunState, step, info, label: str, inputs, stored_inputs, t0: float,
                index: int | None = None) -> StepResult:
        """Cache, attempts with retries, events: one step, or one item of a for_each step (``index``)."""
        sid = label
        extra = {} if index is None else {"item_of": step.id, "index": index}
        emit, fail = self.recorder.emit, self.recorder.step_failed
        node = info.cls(run.loaded.configs[step.id])
        key = None
        if step.cache and node.cacheable(inputs):
            key = cache_key(info, run.loaded.configs[step.id], inputs)
            cached = self.store.cache_get(key)
            if cached is not None and artifacts_exist(cached, self.store.artifacts):
                adopted = adopt_artifacts(cached, self.store.artifacts, run.run_id)
                if adopted != cached:  # the entry now names this run's copies: it outlives the first run
                    self.store.cache_put(key, info.type, adopted, run.run_id)
                cached = adopted
                emit(run, EventKind.STEP_FINISHED, sid, status=StepStatus.CACHED.value, outputs=cached,
                     attempts=0, duration_s=0.0, node=info.type, version=info.version, inputs=stored_inputs,
                     **extra)
                return StepResult(StepStatus.CACHED, cached, None, 0, 0.0)
        attempt = 0
        while True:
            attempt += 1
            emit(run, EventKind.STEP_STARTED, sid, attempt=attempt, node=info.type, version=info.version,
                 inputs=stored_inputs, **extra)
            details = dict(inputs=stored_inputs, info=info, extra=extra)
            try:
                outputs = self.attempts.attempt(run, step, info, node, inputs, attempt, label, index)
                break
            except Blocked as exc:
                return fail(run, sid, exc, attempt, t0, StepStatus.BLOCKED, **details)
            except Cancelled as exc:
                return fail(run, sid, exc, attempt, t0, StepStatus.CANCELLED, **details)
            except Exception as exc:  # noqa: BLE001 - every node failure is recorded with its step id
                if attempt >= step.retry.max_attempts or run.cancel.is_set() or not getattr(exc, "retryable", True):
                    return fail(run, sid, exc, attempt, t0, **details)
                delay = step.retry.wait_before(attempt + 1)
                emit(run, EventKind.STEP_RETRYING, sid, attempt=attempt + 1, delay_s=delay,
                     error={"type": type(exc).__name__, "message": str(exc)}, **extra)
                if run.cancel.wait(delay):
                    return fail(run, sid, Cancelled("the run was cancelled"), attempt, t0,
                                StepStatus.CANCELLED, **details)
        problem = self.unstorable(outputs, "its outputs")
        if problem:
            return fail(run, sid, StepFailure(problem), attempt, t0, **details)
        if key is not None:
            self.store.cache_put(key, info.type, outputs, run.run_id)
        duration = time.perf_counter() - t0
        emit(run, EventKind.STEP_FINISHED, sid, status=StepStatus.SUCCEEDED.value, outputs=outputs,
             attempts=attempt, duration_s=round(duration, 6), node=info.type, version=info.version, **extra)
        return StepResult(StepStatus.SUCCEEDED, outputs, None, attempt, duration)


def _validate_inputs(model, rendered: dict, sid: str):
    try:
        return model.model_validate(rendered)
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "inputs"
            value = err.get("input")
            got = f" (got {value!r})" if not isinstance(value, (dict, list)) else ""
            msg = err["msg"].replace("Input should", "must", 1)
            parts.append(f"input '{where}': {msg}{got}")
        raise StepFailure("; ".join(parts)) from None
