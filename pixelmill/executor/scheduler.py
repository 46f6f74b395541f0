"""The Executor: runs a queued run, walking its steps in dependency order.

``execute`` claims the run (another worker may have it), keeps what a crashed attempt of it had
finished, then starts each step once the steps it depends on are done: a step whose dependency did not
succeed is skipped, independent steps overlap on a thread pool, a chain runs without a thread hop. A
failed step with ``on_error: fail`` or a cancel request stops the run (steps not started are
cancelled). The run closes with its status, its ``outputs`` and its error; anything that goes wrong in
the executor itself ends the run ``failed`` with the cause, never stuck ``running``.

One step is run by ``step.py`` (a ``for_each`` step by ``items.py``), one attempt of a node by
``attempt.py``; events and error records are written by ``record.py``, storage limits and artifacts are
handled in ``outputs.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from .. import expressions as ex
from .. import foreach
from ..events import EventBus, EventKind
from ..loader import LoadedWorkflow
from ..node import Services
from ..secrets import Secrets
from ..status import RunStatus, StepStatus
from ..store import RunStore
from .attempt import Attempts
from .outputs import MAX_STORED_BYTES, discard_partial_artifacts, unstorable
from .record import Recorder
from .state import RunResult, RunState, StepResult
from .step import StepRunner

log = logging.getLogger("pixelmill.executor")


class Executor:
    def __init__(self, store: RunStore, bus: EventBus | None = None, *, services: Services | None = None,
                 max_workers: int = 4, gpu_lock: threading.Lock | None = None, environ=None):
        self.store = store
        self.bus = bus or EventBus()
        self.services = services or Services()
        self.gpu_lock = gpu_lock or threading.Lock()
        self.environ = environ
        self._recorder = Recorder(store, self.bus)
        attempts = Attempts(store, self._recorder, self.services, self.gpu_lock)
        self._steps = StepRunner(store, self._recorder, attempts, MAX_STORED_BYTES)
        self._pool = ThreadPoolExecutor(max_workers=max(2, max_workers), thread_name_prefix="pixelmill-step")
        self._active: dict[str, threading.Event] = {}
        self._active_lock = threading.Lock()

    @property
    def max_stored_bytes(self) -> int:
        """The most one stored value (a step's inputs or outputs, the workflow outputs) may take as JSON."""
        return self._steps.max_stored_bytes

    @max_stored_bytes.setter
    def max_stored_bytes(self, value: int) -> None:
        self._steps.max_stored_bytes = value

    def shutdown(self) -> None:
        with self._active_lock:
            for ev in self._active.values():
                ev.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- public -------------------------------------------------------------

    def cancel(self, run_id: str) -> str | None:
        """Cancel a queued run, or ask a running one in this process to stop; returns the stored status."""
        status = self.store.request_cancel(run_id)
        with self._active_lock:
            ev = self._active.get(run_id)
        if ev is not None:
            ev.set()
        return status

    def active_runs(self) -> list[str]:
        with self._active_lock:
            return list(self._active)

    def execute(self, loaded: LoadedWorkflow, run_id: str, *, inputs: dict, trigger: dict | None = None,
                reuse: dict[str, dict] | None = None) -> RunResult | None:
        """Run a queued run (created with ``store.create_run``). None if another worker already claimed it."""
        if not self.store.claim(run_id):
            return None
        run = RunState(loaded, run_id, inputs, trigger or {}, Secrets(self.environ), threading.Event())
        with self._active_lock:
            self._active[run_id] = run.cancel
        try:
            try:
                # a run re-queued after a crash keeps what it finished: only unfinished steps run again
                finished = self.store.finished_steps(run_id)
                resumed = {sid: row for sid, row in finished.items() if sid in loaded.nodes}
                run.resumed_items = foreach.finished_items(finished, loaded.nodes, resumed)
                if finished:
                    discard_partial_artifacts(self.store.artifacts, run_id, finished, loaded.nodes)
                return self._execute(run, reuse or {}, resumed)
            except Exception as exc:  # noqa: BLE001 - whatever happens, the run ends failed, never stuck running
                return self._crashed(run, exc)
        finally:
            with self._active_lock:
                self._active.pop(run_id, None)

    # -- internals ------------------------------------------------------------

    def _crashed(self, run: RunState, exc: BaseException) -> RunResult:
        """End a run that failed inside the executor itself: stored as ``failed`` with the cause."""
        run.cancel.set()  # steps still running stop at their next check
        step_id = getattr(exc, "step_id", None)
        where = f" in step '{step_id}'" if step_id else ""
        log.error("run %s: the executor failed%s: %s", run.run_id, where,
                  run.secrets.redact(f"{type(exc).__name__}: {exc}"), exc_info=exc)
        error = run.secrets.redact({
            "type": type(exc).__name__, "step_id": step_id,
            "message": f"the run failed{where}: {type(exc).__name__}: {_short(str(exc))}",
        })
        data = {"status": RunStatus.FAILED.value, "outputs": {}, "error": error, "duration_s": 0.0}
        try:
            self._recorder.emit(run, EventKind.RUN_FINISHED, **data)
        except Exception:  # noqa: BLE001 - e.g. the database is gone; nothing more can be recorded
            log.exception("run %s: could not record its failure", run.run_id)
        return RunResult(run.run_id, run.loaded.name, RunStatus.FAILED, {}, self._public_steps(run), error)

    def _public_steps(self, run: RunState) -> dict[str, StepResult]:
        """Step results as callers see them: secrets (and values derived from them) redacted."""
        return {sid: StepResult(r.status, run.secrets.redact(r.outputs), run.secrets.redact(r.error), r.attempts,
                                r.duration_s) for sid, r in dict(run.results).items()}

    def _execute(self, run: RunState, reuse: dict[str, dict], resumed: dict[str, dict] | None = None) -> RunResult:
        loaded = run.loaded
        resumed = resumed or {}
        self._recorder.emit(run, EventKind.RUN_STARTED, workflow=loaded.name, inputs=run.inputs,
                            **({"resumed": sorted(resumed)} if resumed else {}))
        started = time.perf_counter()
        pending = list(loaded.order)
        running: dict[Future, str] = {}
        stop = False
        while pending or running:
            if run.cancel.is_set():
                stop = True
            ready = [] if stop else [s for s in pending if loaded.deps[s] <= run.results.keys()]
            for sid in ready:
                pending.remove(sid)
                if sid in resumed:
                    self._resume(run, sid, resumed[sid])
                    continue
                if sid in reuse:
                    self._reuse(run, sid, reuse[sid])
                    continue
                # a dep whose status alone the step reads (a fallback's ``if``) only had to finish
                bad = sorted(d for d in loaded.deps[sid] - loaded.status_deps.get(sid, set())
                             if not run.results[d].status.ok)
                if bad:
                    self._skip(run, sid, f"dependency '{bad[0]}' did not succeed ({run.results[bad[0]].status.value})")
                    continue
                if not running and len(ready) == 1:
                    run.results[sid] = self._steps.run(run, sid)  # a chain needs no thread hop
                else:
                    running[self._pool.submit(self._steps.run, run, sid)] = sid
            if any(r.status in (StepStatus.FAILED, StepStatus.BLOCKED, StepStatus.CANCELLED)
                   and loaded.workflow.step(s).on_error == "fail" for s, r in run.results.items()):
                stop = True
            if stop:
                run.cancel.set()
                for sid in pending:
                    self._skip(run, sid, "the run stopped before this step", StepStatus.CANCELLED)
                pending.clear()
            if running:
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in done:
                    run.results[running.pop(fut)] = fut.result()
            elif pending and not ready and not stop:
                raise RuntimeError(f"workflow '{loaded.name}' has steps that can never start: {pending}")
        return self._close(run, time.perf_counter() - started)

    def _close(self, run: RunState, elapsed: float) -> RunResult:
        wf = run.loaded.workflow
        results = run.results
        failed = [(s.id, results[s.id]) for s in wf.steps
                  if s.id in results and results[s.id].status in (StepStatus.FAILED, StepStatus.BLOCKED)
                  and s.on_error == "fail"]
        if any(r.status is StepStatus.BLOCKED for _, r in failed):
            status = RunStatus.BLOCKED
        elif failed:
            status = RunStatus.FAILED
        elif run.cancel.is_set():
            status = RunStatus.CANCELLED
        else:
            status = RunStatus.SUCCEEDED
        error = next((r.error for _, r in failed), None)
        if status is RunStatus.CANCELLED:
            error = {"type": "Cancelled", "message": "the run was cancelled", "step_id": None}
        outputs = self._outputs(run) if status is RunStatus.SUCCEEDED else {}
        if status is RunStatus.SUCCEEDED:
            problem = unstorable(outputs, "the workflow outputs", self.max_stored_bytes)
            if problem:
                status, outputs = RunStatus.FAILED, {}
                error = {"type": "StepFailure", "message": problem, "step_id": None}
        self._recorder.emit(run, EventKind.RUN_FINISHED, status=status.value, outputs=outputs, error=error,
                            duration_s=round(elapsed, 6))
        return RunResult(run.run_id, run.loaded.name, status, run.secrets.redact(outputs), self._public_steps(run),
                         run.secrets.redact(error))

    def _outputs(self, run: RunState) -> dict:
        out = {}
        for name, value in run.loaded.workflow.outputs.items():
            try:
                out[name] = ex.render(value, run.context(ex.referenced_secrets(value)), run.secrets.taint)
            except (ex.ExpressionError, KeyError):
                out[name] = None  # e.g. it names a step that was skipped by its condition
        return run.secrets.redact(out)

    def _resume(self, run: RunState, sid: str, row: dict) -> None:
        """A step this run finished before its process died: kept as it is (its stored row is not touched)."""
        info = run.loaded.nodes[sid]
        result = StepResult.from_row(row)
        run.results[sid] = result
        self._recorder.emit(run, EventKind.STEP_FINISHED, sid, status=result.status.value,
                            outputs=result.outputs, node=info.type, version=info.version, attempts=result.attempts,
                            duration_s=result.duration_s, reused=True, resumed=True)

    def _reuse(self, run: RunState, sid: str, outputs: dict) -> None:
        info = run.loaded.nodes[sid]
        result = StepResult(StepStatus.SUCCEEDED, outputs, None, 0, 0.0)
        run.results[sid] = result
        self._recorder.emit(run, EventKind.STEP_FINISHED, sid, status=result.status.value, outputs=outputs,
                            node=info.type, version=info.version, attempts=0, duration_s=0.0, reused=True)

    def _skip(self, run: RunState, sid: str, reason: str, status: StepStatus = StepStatus.SKIPPED) -> None:
        info = run.loaded.nodes[sid]
        run.results[sid] = StepResult(status)
        self._recorder.emit(run, EventKind.STEP_SKIPPED, sid, status=status.value, reason=reason,
                            node=info.type, version=info.version)


def _short(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"
