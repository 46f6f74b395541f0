"""A ``for_each`` step: its item list, each item run as a step of its own, the collected outputs.

Each item renders its own inputs (with ``item`` and ``index``) and runs like a step (``StepRunner.run_one``:
cache, retries, timeout), recorded as ``<id>[<index>]``; at most ``max_parallel`` run at once. Items a
resumed run had finished are kept. The step's own row holds every output as a list in item order, and
the step fails, blocks or succeeds by ``foreach.verdict``. The helpers that know nothing of the executor
(labels, the item check, fan-out, collecting, the verdict) are in ``pixelmill/foreach.py``.
"""

from __future__ import annotations

import threading
import time

from .. import expressions as ex
from .. import foreach
from ..events import EventKind
from ..node import Cancelled
from ..status import StepStatus
from .state import RunState, StepFailure, StepResult


def render_items(run: RunState, step) -> list:
    """The step's ``for_each`` value rendered; ``StepFailure`` if it is not a list of allowed size."""
    items = ex.render(step.for_each, run.context(ex.referenced_secrets(step.for_each)), run.secrets.taint)
    try:
        return foreach.check_items(items)
    except foreach.ItemsError as exc:
        raise StepFailure(str(exc)) from None


def run_for_each(runner, run: RunState, step, info, items: list, t0: float) -> StepResult:
    """Run the step once per item with ``runner`` (the ``StepRunner``): per-item rows ``<id>[<index>]``,
    one collected row."""
    emit, fail = runner.recorder.emit, runner.recorder.step_failed
    sid, n = step.id, len(items)
    stored_items = run.secrets.redact(items)
    if runner.unstorable(stored_items, "its for_each items"):
        stored_items = f"{n} items"
    emit(run, EventKind.STEP_STARTED, sid, attempt=1, node=info.type, version=info.version,
         inputs={"for_each": stored_items}, items=n)
    base = run.context(ex.referenced_secrets(step.with_))
    done = foreach.Progress(n, lambda value, i, status: emit(
        run, EventKind.STEP_PROGRESS, sid, value=value, total=n, message=f"item {i} {status}", index=i))
    stop = threading.Event()
    resumed = run.resumed_items.get(sid, {})

    def one(i: int) -> StepResult:
        label, extra = foreach.label(sid, i), {"item_of": sid, "index": i}
        if i in resumed:
            result = StepResult.from_row(resumed[i])
            emit(run, EventKind.STEP_FINISHED, label, status=result.status.value, outputs=result.outputs,
                 node=info.type, version=info.version, attempts=result.attempts,
                 duration_s=result.duration_s, reused=True, resumed=True, **extra)
        elif stop.is_set() or run.cancel.is_set():
            return StepResult(StepStatus.SKIPPED)  # never started: the step stops at a failed item
        else:
            t1 = time.perf_counter()
            try:
                inputs, stored = runner.inputs(run, step, info, {**base, "item": items[i], "index": i}, label)
            except (ex.ExpressionError, StepFailure, KeyError) as exc:
                result = fail(run, label, exc if isinstance(exc, StepFailure) else StepFailure(str(exc)),
                              0, t1, info=info, extra=extra)
            else:
                result = runner.run_one(run, step, info, label, inputs, stored, t1, i)
        if not result.status.ok and step.on_item_error == "stop":
            stop.set()
        done.add(i, result.status.value)
        return result

    results = foreach.fan_out(n, step.max_parallel, one)
    outputs = foreach.collect(results, info.cls.Outputs.model_fields)
    verdict = foreach.verdict(results, step.on_item_error)
    attempts = sum(r.attempts for r in results)
    if verdict is None and any(r.status is StepStatus.SKIPPED for r in results):  # cancelled before they began
        first = next(i for i, r in enumerate(results) if r.status is StepStatus.SKIPPED)
        return fail(run, sid, Cancelled(f"the run was cancelled before item {first} of {n} started"),
                    attempts, t0, StepStatus.CANCELLED, info=info)
    if verdict is not None:
        status, message = verdict
        return fail(run, sid, StepFailure(message), attempts, t0, StepStatus(status), info=info)
    problem = runner.unstorable(outputs, "its collected outputs")
    if problem:
        return fail(run, sid, StepFailure(problem), attempts, t0)
    duration = time.perf_counter() - t0
    failed = [i for i, r in enumerate(results) if not r.status.ok]
    emit(run, EventKind.STEP_FINISHED, sid, status=StepStatus.SUCCEEDED.value, outputs=outputs,
         attempts=attempts, duration_s=round(duration, 6), node=info.type, version=info.version,
         items=n, failed_items=failed)
    return StepResult(StepStatus.SUCCEEDED, outputs, None, attempts, duration)
