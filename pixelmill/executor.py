"""Run a validated workflow: dependency order, overlap where free, GPU steps one at a time,
retries with backoff, timeouts, conditions, ``on_error``, output cache, events.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from pydantic import BaseModel, ValidationError

from . import expressions as ex
from . import foreach
from .events import Event, EventBus, EventKind
from .loader import LoadedWorkflow
from .node import Blocked, Cancelled, NodeContext, Services
from .secrets import Secrets
from .status import RunStatus, StepStatus
from .store import RunStore

log = logging.getLogger(__name__)


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


@dataclass
class RunResult:
    run_id: str
    workflow: str
    status: RunStatus
    outputs: dict = field(default_factory=dict)
    steps: dict[str, StepResult] = field(default_factory=dict)
    error: dict | None = None


class _RunLogger(logging.LoggerAdapter):
    """Formats the message first, then redacts secrets, so no secret reaches a log handler."""

    def __init__(self, logger, secrets: Secrets, extra):
        super().__init__(logger, extra)
        self.secrets = secrets

    def log(self, level, msg, *args, **kwargs):
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            kwargs.setdefault("extra", self.extra)
            self.logger.log(level, self.secrets.redact(text), **kwargs)


@dataclass
class _Run:
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


class Executor:
    def __init__(self, store: RunStore, bus: EventBus | None = None, *, services: Services | None = None,
                 max_workers: int = 4, gpu_lock: threading.Lock | None = None, environ=None):
        self.store = store
        self.bus = bus or EventBus()
        self.services = services or Services()
        self.gpu_lock = gpu_lock or threading.Lock()
        self.environ = environ
        self.max_stored_bytes = MAX_STORED_BYTES
        self._pool = ThreadPoolExecutor(max_workers=max(2, max_workers), thread_name_prefix="pixelmill-step")
        self._active: dict[str, threading.Event] = {}
        self._active_lock = threading.Lock()

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
        run = _Run(loaded, run_id, inputs, trigger or {}, Secrets(self.environ), threading.Event())
        with self._active_lock:
            self._active[run_id] = run.cancel
        try:
            try:
                # a run re-queued after a crash keeps what it finished: only unfinished steps run again
                finished = self.store.finished_steps(run_id)
                resumed = {sid: row for sid, row in finished.items() if sid in loaded.nodes}
                run.resumed_items = foreach.finished_items(finished, loaded.nodes, resumed)
                if finished:
                    _discard_partial_artifacts(self.store.artifacts, run_id, finished, loaded.nodes)
                return self._execute(run, reuse or {}, resumed)
            except Exception as exc:  # noqa: BLE001 - whatever happens, the run ends failed, never stuck running
                return self._crashed(run, exc)
        finally:
            with self._active_lock:
                self._active.pop(run_id, None)

    # -- internals ------------------------------------------------------------

    def _emit(self, run: _Run, kind: EventKind, step_id: str | None = None, **data) -> None:
        data = run.secrets.redact(data)
        event = Event(kind, run.run_id, step_id, data)
        event_id = self.store.record(event)
        self.bus.publish(Event(kind, run.run_id, step_id, data, event.ts, event_id))

    def _crashed(self, run: _Run, exc: BaseException) -> RunResult:
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
            self._emit(run, EventKind.RUN_FINISHED, **data)
        except Exception:  # noqa: BLE001 - e.g. the database is gone; nothing more can be recorded
            log.exception("run %s: could not record its failure", run.run_id)
        return RunResult(run.run_id, run.loaded.name, RunStatus.FAILED, {}, self._public_steps(run), error)

    def _public_steps(self, run: _Run) -> dict[str, StepResult]:
        """Step results as callers see them: secrets (and values derived from them) redacted."""
        return {sid: StepResult(r.status, run.secrets.redact(r.outputs), run.secrets.redact(r.error), r.attempts,
                                r.duration_s) for sid, r in dict(run.results).items()}

    def _execute(self, run: _Run, reuse: dict[str, dict], resumed: dict[str, dict] | None = None) -> RunResult:
        loaded = run.loaded
        resumed = resumed or {}
        self._emit(run, EventKind.RUN_STARTED, workflow=loaded.name, inputs=run.inputs,
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
                    run.results[sid] = self._safe_step(run, sid)  # a chain needs no thread hop
                else:
                    running[self._pool.submit(self._safe_step, run, sid)] = sid
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

    def _close(self, run: _Run, elapsed: float) -> RunResult:
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
            problem = self._unstorable(outputs, "the workflow outputs")
            if problem:
                status, outputs = RunStatus.FAILED, {}
                error = {"type": "StepFailure", "message": problem, "step_id": None}
        self._emit(run, EventKind.RUN_FINISHED, status=status.value, outputs=outputs, error=error,
                   duration_s=round(elapsed, 6))
        return RunResult(run.run_id, run.loaded.name, status, run.secrets.redact(outputs), self._public_steps(run),
                         run.secrets.redact(error))

    def _outputs(self, run: _Run) -> dict:
        out = {}
        for name, value in run.loaded.workflow.outputs.items():
            try:
                out[name] = ex.render(value, run.context(ex.referenced_secrets(value)), run.secrets.taint)
            except (ex.ExpressionError, KeyError):
                out[name] = None  # e.g. it names a step that was skipped by its condition
        return run.secrets.redact(out)

    def _resume(self, run: _Run, sid: str, row: dict) -> None:
        """A step this run finished before its process died: kept as it is (its stored row is not touched)."""
        info = run.loaded.nodes[sid]
        result = StepResult(StepStatus(row["status"]), row.get("outputs") or {}, None, row.get("attempts") or 0,
                            row.get("duration_s") or 0.0)
        run.results[sid] = result
        self._emit(run, EventKind.STEP_FINISHED, sid, status=result.status.value, outputs=result.outputs,
                   node=info.type, version=info.version, attempts=result.attempts, duration_s=result.duration_s,
                   reused=True, resumed=True)

    def _reuse(self, run: _Run, sid: str, outputs: dict) -> None:
        info = run.loaded.nodes[sid]
        result = StepResult(StepStatus.SUCCEEDED, outputs, None, 0, 0.0)
        run.results[sid] = result
        self._emit(run, EventKind.STEP_FINISHED, sid, status=result.status.value, outputs=outputs, node=info.type,
                   version=info.version, attempts=0, duration_s=0.0, reused=True)

    def _skip(self, run: _Run, sid: str, reason: str, status: StepStatus = StepStatus.SKIPPED) -> None:
        info = run.loaded.nodes[sid]
        run.results[sid] = StepResult(status)
        self._emit(run, EventKind.STEP_SKIPPED, sid, status=status.value, reason=reason, node=info.type,
                   version=info.version)

    def _fail(self, run: _Run, sid: str, exc: BaseException, attempts: int, t0: float,
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
            self._emit(run, EventKind.STEP_FAILED, sid, **data)
        except Exception:  # noqa: BLE001 - e.g. inputs the store cannot take: record the failure without them
            log.exception("run %s step %s: could not record the failure in full", run.run_id, sid)
            self._emit(run, EventKind.STEP_FAILED, sid, **{**data, "inputs": None,
                                                            "error": {**error, "traceback": ""}})
        return result

    def _safe_step(self, run: _Run, sid: str) -> StepResult:
        """``_step``, but a failure of the executor's own work (recording, storing) fails the step, not the run."""
        t0 = time.perf_counter()
        try:
            return self._step(run, sid)
        except Exception as exc:  # noqa: BLE001
            log.exception("run %s step %s: unexpected error in the executor", run.run_id, sid)
            try:
                return self._fail(run, sid, exc, 0, t0)
            except Exception as again:  # noqa: BLE001 - cannot even record it: end the run
                again.step_id = sid
                raise again from exc

    def _unstorable(self, value, what: str) -> str | None:
        """Why ``value`` cannot go into the run store (None if it can)."""
        try:
            size = len(json.dumps(value, allow_nan=False, default=_not_json).encode())
        except (TypeError, ValueError) as exc:
            return f"{what} cannot be stored: {exc}"
        if size > self.max_stored_bytes:
            return (f"{what} take {size:,} bytes as JSON, more than the run store keeps for one value "
                    f"({self.max_stored_bytes:,}); pass large data as an artifact file")
        return None

    def _step(self, run: _Run, sid: str) -> StepResult:
        step = run.loaded.workflow.step(sid)
        info = run.loaded.nodes[sid]
        t0 = time.perf_counter()
        try:
            if step.if_ is not None and not self._condition(run, step):
                result = StepResult(StepStatus.SKIPPED)
                self._emit(run, EventKind.STEP_SKIPPED, sid, status="skipped", reason="condition is false",
                           node=info.type, version=info.version)
                return result
            if step.for_each is not None:
                items = self._items(run, step)
            else:
                inputs, stored_inputs = self._inputs(run, step, info,
                                                     run.context(ex.referenced_secrets(step.with_)), sid)
        except (ex.ExpressionError, StepFailure, KeyError) as exc:
            return self._fail(run, sid, exc if isinstance(exc, StepFailure) else StepFailure(str(exc)), 0, t0)
        if step.for_each is not None:
            return self._for_each(run, step, info, items, t0)
        return self._run_one(run, step, info, sid, inputs, stored_inputs, t0)

    def _inputs(self, run: _Run, step, info, context: dict, label: str):
        """Render and validate a step's (or one item's) inputs: the inputs model and what the store keeps."""
        rendered = ex.render(step.with_, context, run.secrets.taint)
        inputs = _validate_inputs(info.cls.Inputs, rendered, label)
        stored_inputs = run.secrets.redact(inputs.model_dump(mode="json"))
        problem = self._unstorable(stored_inputs, "its rendered inputs")
        if problem:
            raise StepFailure(problem)
        return inputs, stored_inputs

    def _items(self, run: _Run, step) -> list:
        items = ex.render(step.for_each, run.context(ex.referenced_secrets(step.for_each)), run.secrets.taint)
        try:
            return foreach.check_items(items)
        except foreach.ItemsError as exc:
            raise StepFailure(str(exc)) from None

    def _for_each(self, run: _Run, step, info, items: list, t0: float) -> StepResult:
        """Run the step once per item (see ``foreach``): per-item rows ``<id>[<index>]``, one collected row."""
        sid, n = step.id, len(items)
        stored_items = run.secrets.redact(items)
        if self._unstorable(stored_items, "its for_each items"):
            stored_items = f"{n} items"
        self._emit(run, EventKind.STEP_STARTED, sid, attempt=1, node=info.type, version=info.version,
                   inputs={"for_each": stored_items}, items=n)
        base = run.context(ex.referenced_secrets(step.with_))
        done = foreach.Progress(n, lambda value, i, status: self._emit(
            run, EventKind.STEP_PROGRESS, sid, value=value, total=n, message=f"item {i} {status}", index=i))
        stop = threading.Event()
        resumed = run.resumed_items.get(sid, {})

        def one(i: int) -> StepResult:
            label, extra = foreach.label(sid, i), {"item_of": sid, "index": i}
            if i in resumed:
                row = resumed[i]
                result = StepResult(StepStatus(row["status"]), row.get("outputs") or {}, None,
                                    row.get("attempts") or 0, row.get("duration_s") or 0.0)
                self._emit(run, EventKind.STEP_FINISHED, label, status=result.status.value, outputs=result.outputs,
                           node=info.type, version=info.version, attempts=result.attempts,
                           duration_s=result.duration_s, reused=True, resumed=True, **extra)
            elif stop.is_set() or run.cancel.is_set():
                return StepResult(StepStatus.SKIPPED)  # never started: the step stops at a failed item
            else:
                t1 = time.perf_counter()
                try:
                    inputs, stored = self._inputs(run, step, info, {**base, "item": items[i], "index": i}, label)
                except (ex.ExpressionError, StepFailure, KeyError) as exc:
                    result = self._fail(run, label, exc if isinstance(exc, StepFailure) else StepFailure(str(exc)),
                                        0, t1, info=info, extra=extra)
                else:
                    result = self._run_one(run, step, info, label, inputs, stored, t1, i)
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
            return self._fail(run, sid, Cancelled(f"the run was cancelled before item {first} of {n} started"),
                              attempts, t0, StepStatus.CANCELLED, info=info)
        if verdict is not None:
            status, message = verdict
            return self._fail(run, sid, StepFailure(message), attempts, t0, StepStatus(status), info=info)
        problem = self._unstorable(outputs, "its collected outputs")
        if problem:
            return self._fail(run, sid, StepFailure(problem), attempts, t0)
        duration = time.perf_counter() - t0
        failed = [i for i, r in enumerate(results) if not r.status.ok]
        self._emit(run, EventKind.STEP_FINISHED, sid, status=StepStatus.SUCCEEDED.value, outputs=outputs,
                   attempts=attempts, duration_s=round(duration, 6), node=info.type, version=info.version,
                   items=n, failed_items=failed)
        return StepResult(StepStatus.SUCCEEDED, outputs, None, attempts, duration)

    def _run_one(self, run: _Run, step, info, label: str, inputs, stored_inputs, t0: float,
                 index: int | None = None) -> StepResult:
        """Cache, attempts with retries, events: one step, or one item of a for_each step (``index``)."""
        sid = label
        extra = {} if index is None else {"item_of": step.id, "index": index}
        node = info.cls(run.loaded.configs[step.id])
        key = None
        if step.cache and node.cacheable(inputs):
            key = _cache_key(info, run.loaded.configs[step.id], inputs)
            cached = self.store.cache_get(key)
            if cached is not None and _artifacts_exist(cached, self.store.artifacts):
                adopted = _adopt_artifacts(cached, self.store.artifacts, run.run_id)
                if adopted != cached:  # the entry now names this run's copies: it outlives the first run
                    self.store.cache_put(key, info.type, adopted, run.run_id)
                cached = adopted
                self._emit(run, EventKind.STEP_FINISHED, sid, status=StepStatus.CACHED.value, outputs=cached,
                           attempts=0, duration_s=0.0, node=info.type, version=info.version, inputs=stored_inputs,
                           **extra)
                return StepResult(StepStatus.CACHED, cached, None, 0, 0.0)
        attempt = 0
        while True:
            attempt += 1
            self._emit(run, EventKind.STEP_STARTED, sid, attempt=attempt, node=info.type, version=info.version,
                       inputs=stored_inputs, **extra)
            fail = dict(inputs=stored_inputs, info=info, extra=extra)
            try:
                outputs = self._attempt(run, step, info, node, inputs, attempt, label, index)
                break
            except Blocked as exc:
                return self._fail(run, sid, exc, attempt, t0, StepStatus.BLOCKED, **fail)
            except Cancelled as exc:
                return self._fail(run, sid, exc, attempt, t0, StepStatus.CANCELLED, **fail)
            except Exception as exc:  # noqa: BLE001 - every node failure is recorded with its step id
                if attempt >= step.retry.max_attempts or run.cancel.is_set() or not getattr(exc, "retryable", True):
                    return self._fail(run, sid, exc, attempt, t0, **fail)
                delay = step.retry.wait_before(attempt + 1)
                self._emit(run, EventKind.STEP_RETRYING, sid, attempt=attempt + 1, delay_s=delay,
                           error={"type": type(exc).__name__, "message": str(exc)}, **extra)
                if run.cancel.wait(delay):
                    return self._fail(run, sid, Cancelled("the run was cancelled"), attempt, t0,
                                      StepStatus.CANCELLED, **fail)
        problem = self._unstorable(outputs, "its outputs")
        if problem:
            return self._fail(run, sid, StepFailure(problem), attempt, t0, **fail)
        if key is not None:
            self.store.cache_put(key, info.type, outputs, run.run_id)
        duration = time.perf_counter() - t0
        self._emit(run, EventKind.STEP_FINISHED, sid, status=StepStatus.SUCCEEDED.value, outputs=outputs,
                   attempts=attempt, duration_s=round(duration, 6), node=info.type, version=info.version, **extra)
        return StepResult(StepStatus.SUCCEEDED, outputs, None, attempt, duration)

    def _condition(self, run: _Run, step) -> bool:
        value = step.if_
        if isinstance(value, bool):
            return value
        text = value if ex.OPEN in value else ex.OPEN + value + ex.CLOSE
        result = ex.render(text, run.context(ex.referenced_secrets(text)), run.secrets.taint)
        if isinstance(result, str):
            return result.strip().lower() not in ("", "false", "0", "no", "none")
        return bool(result)

    def _attempt(self, run: _Run, step, info, node, inputs, attempt: int, label: str | None = None,
                 index: int | None = None) -> dict:
        label = label or step.id
        cancel = threading.Event()
        last = [0.0]

        def progress(value, total, message):
            now = time.monotonic()
            if now - last[0] < 0.05 and (total is None or value < total):
                return  # at most 20 progress events a second
            last[0] = now
            self._emit(run, EventKind.STEP_PROGRESS, label, value=value, total=total, message=message)

        ctx = NodeContext(
            run_id=run.run_id, step_id=step.id, item_index=index, workflow=run.loaded.name,
            artifacts=self.store.artifacts,
            secrets=run.secrets, progress_cb=progress,
            logger=_RunLogger(logging.getLogger(f"pixelmill.node.{info.type}"), run.secrets,
                              {"run_id": run.run_id, "step_id": label}),
            cancel_event=cancel, run_cancel=run.cancel, services=self.services, attempt=attempt,
            deadline=time.monotonic() + step.timeout if step.timeout is not None else None,
        )
        try:
            result = _call_with_timeout(lambda: self._run_node(node, inputs, ctx, info), step.timeout, cancel,
                                        label)
        except Cancelled:
            if ctx.deadline is not None and time.monotonic() >= ctx.deadline and not run.cancel.is_set():
                raise StepTimeout(f"timed out after {step.timeout:g} s") from None  # it saw its deadline first
            raise
        if isinstance(result, BaseModel) and not isinstance(result, info.cls.Outputs):
            result = result.model_dump()
        if not isinstance(result, info.cls.Outputs):
            try:
                result = info.cls.Outputs.model_validate(result)
            except ValidationError as exc:
                raise StepFailure(f"node returned outputs that do not match its Outputs model: {exc}") from None
        return result.model_dump(mode="json")

    def _run_node(self, node, inputs, ctx, info):
        if info.cls.uses_gpu:
            while not self.gpu_lock.acquire(timeout=0.1):  # waiting for the GPU is cancellable too
                ctx.check_cancelled()
            try:
                ctx.check_cancelled()
                return node.run(inputs, ctx)
            finally:
                self.gpu_lock.release()
        return node.run(inputs, ctx)


def _call_with_timeout(fn, timeout: float | None, cancel: threading.Event, step_id: str):
    if timeout is None:
        return fn()
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the caller
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True, name=f"pixelmill-{step_id}")
    t.start()
    t.join(timeout)
    if t.is_alive():
        cancel.set()  # cooperative nodes stop at their next progress() or check_cancelled()
        t.join(STOP_GRACE_S)
        if t.is_alive():
            log.warning("step '%s': its node did not stop within %g s of its timeout; it keeps running in the "
                        "background (see docs/node-authors.md, 'Timeouts and cancellation')", step_id, STOP_GRACE_S)
        raise StepTimeout(f"timed out after {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


STOP_GRACE_S = 1.0  # how long a timed-out node gets to notice its cancel token before the step fails anyway
MAX_STORED_BYTES = 8 * 1024 * 1024  # one step's inputs or outputs, as JSON


def _not_json(value):
    raise TypeError(f"a {type(value).__name__} is not JSON data")


def _short(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"


def _discard_partial_artifacts(artifacts, run_id: str, finished: dict[str, dict], step_ids) -> None:
    """Files of steps that had not finished when the run was interrupted: they are written again on resume."""
    kept = {name for row in finished.values() for name in _artifact_names(row.get("outputs"))}
    redo = [sid for sid in step_ids if sid not in finished]
    for info in artifacts.list(run_id):
        name = info.name
        if name in kept:
            continue
        owner = max((sid for sid in step_ids if name.startswith(f"{sid}-")), key=len, default=None)
        if owner in redo:
            artifacts.delete(run_id, name)


def _artifact_names(value):
    if isinstance(value, dict):
        if value.get("kind") == "artifact" and "name" in value:
            yield value["name"]
        for v in value.values():
            yield from _artifact_names(v)
    elif isinstance(value, list):
        for v in value:
            yield from _artifact_names(v)


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


def _cache_key(info, config: BaseModel, inputs: BaseModel) -> str:
    payload = json.dumps([info.type, info.version, config.model_dump(mode="json"), inputs.model_dump(mode="json")],
                         sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def _artifacts_exist(outputs, artifacts) -> bool:
    if isinstance(outputs, dict):
        if outputs.get("kind") == "artifact" and "run_id" in outputs and "name" in outputs:
            try:
                return artifacts.exists(outputs["run_id"], outputs["name"])
            except ValueError:  # not a plain name: not one of ours
                return False
        return all(_artifacts_exist(v, artifacts) for v in outputs.values())
    if isinstance(outputs, list):
        return all(_artifacts_exist(v, artifacts) for v in outputs)
    return True


def _adopt_artifacts(outputs, artifacts, run_id: str):
    """Cached outputs with their artifacts copied into ``run_id`` (a folder store hard-links them), so
    the new run owns its files and keeps them when the run that made them is deleted."""
    if isinstance(outputs, dict):
        if outputs.get("kind") == "artifact" and "run_id" in outputs and "name" in outputs:
            if outputs["run_id"] == run_id:
                return outputs
            if not artifacts.exists(run_id, outputs["name"]):
                artifacts.copy(outputs["run_id"], outputs["name"], run_id)
            return {**outputs, "run_id": run_id}
        return {k: _adopt_artifacts(v, artifacts, run_id) for k, v in outputs.items()}
    if isinstance(outputs, list):
        return [_adopt_artifacts(v, artifacts, run_id) for v in outputs]
    return outputs
