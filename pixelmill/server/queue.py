"""The durable run queue: every accepted run is a ``queued`` row first; a bounded pool of worker threads
claims and executes them. On start, runs left ``running`` by a dead process are re-queued and every
queued run is picked up again; ``store.claim`` (queued -> running, atomic) makes each run execute once
even when two processes share one database.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid

from sqlalchemy import select, update

from ..db import RunRow, StepRow
from ..events import Event, EventKind
from ..fileinputs import RunFiles
from ..inputs import resolve_inputs
from ..problems import WorkflowInvalid
from ..rerun import reused_outputs
from ..status import RunStatus, StepStatus
from ..store import utcnow as store_now

log = logging.getLogger(__name__)


class QueueFull(Exception):
    pass


class _Pending:
    __slots__ = ("kwargs", "done", "error")

    def __init__(self, kwargs: dict):
        self.kwargs = kwargs
        self.done = threading.Event()
        self.error: BaseException | None = None


class GroupWriter:
    """Writes queued runs for many request threads in one transaction (group commit).

    A request thread hands its run over and waits until the transaction holding it has committed, so the
    response still goes out only after the run is in the store; under load one commit covers many runs.
    """

    def __init__(self, store, max_batch: int = 256):
        self.store = store
        self.max_batch = max_batch
        self._items: list[_Pending] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="pixelmill-group-writer", daemon=True)
        self._thread.start()

    def create_run(self, **kwargs) -> str:
        import uuid

        kwargs.setdefault("run_id", uuid.uuid4().hex)
        item = _Pending(kwargs)
        with self._cond:
            if self._stop:
                raise RuntimeError("the service is shutting down")
            self._items.append(item)
            self._cond.notify()
        item.done.wait()
        if item.error is not None:
            raise item.error
        return kwargs["run_id"]

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(5)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._stop:
                    self._cond.wait()
                if not self._items and self._stop:
                    return
                batch, self._items = self._items[:self.max_batch], self._items[self.max_batch:]
            try:
                with self.store.writing() as conn:
                    for item in batch:
                        self.store.create_run(conn=conn, **item.kwargs)
            except Exception:  # one bad row must not fail the others: write them one by one
                for item in batch:
                    try:
                        self.store.create_run(**item.kwargs)
                    except Exception as exc:
                        item.error = exc
            for item in batch:
                item.done.set()


class RunQueue:
    def __init__(self, runtime, workflows, *, workers: int = 4, max_queue: int = 10_000, sweep_interval: float = 10.0):
        self.runtime = runtime
        self.workflows = workflows
        self.workers = max(1, workers)
        self.max_queue = max_queue
        self.sweep_interval = sweep_interval
        self._q: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._busy = 0
        self._lock = threading.Lock()
        self.writer = GroupWriter(runtime.store)
        self._created: dict[str, dict] = {}  # runs created here and not yet taken: saves a read per run

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> list[str]:
        """Re-queue runs of dead processes, enqueue every queued run, start the workers; returns re-queued ids."""
        recovered = self.runtime.store.recover_interrupted(requeue=True)
        if recovered:
            log.warning("re-queued %d run(s) interrupted by a crash: %s", len(recovered), ", ".join(recovered))
        waiting = self.queued_ids()
        if waiting:
            log.info("picking up %d queued run(s) from the store", len(waiting))
        for run_id in waiting:
            self._q.put(run_id)
        for i in range(self.workers):
            t = threading.Thread(target=self._work, name=f"pixelmill-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        sweeper = threading.Thread(target=self._sweep, name="pixelmill-sweeper", daemon=True)
        sweeper.start()
        self._threads.append(sweeper)
        return recovered

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.writer.stop()
        for _ in range(self.workers):
            self._q.put(None)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def hand_back(self, run_ids: list[str]) -> list[str]:
        """At shutdown, runs of this process still executing go back to ``queued`` (their running steps
        become ``interrupted``): the next start runs them as queued runs, not as crash victims."""
        return hand_back(self.runtime.store, run_ids)

    # -- producers ----------------------------------------------------------------

    def create(self, loaded, inputs: dict | None, *, trigger: dict, trigger_kind: str, retry_of: str | None = None) -> str:
        """Write a queued run (raises ``InputError`` for bad inputs, ``QueueFull`` when too many wait)."""
        waiting = self.waiting()
        if waiting >= self.max_queue:
            raise QueueFull(f"{waiting} runs are waiting (PIXELMILL_MAX_QUEUE={self.max_queue})")
        if retry_of is None:
            run_id = uuid.uuid4().hex  # known before the inputs are checked: image/file inputs go to its folder
            resolved = resolve_inputs(loaded.workflow.inputs, inputs, RunFiles(self.runtime.store.artifacts,
                                                                               run_id))
            self.writer.create_run(workflow=loaded.name, inputs=resolved, trigger=trigger or {},
                                   trigger_kind=trigger_kind, workflow_file=loaded.file, run_id=run_id)
            self._created[run_id] = {"id": run_id, "workflow": loaded.name, "workflow_file": loaded.file,
                                     "status": RunStatus.QUEUED.value, "inputs": resolved,
                                     "trigger": trigger or {}, "retry_of": None}
            return run_id
        return self.runtime.store.create_run(loaded.name, inputs=inputs or {}, trigger=trigger,
                                             trigger_kind=trigger_kind, workflow_file=loaded.file, retry_of=retry_of)

    def enqueue(self, run_id: str) -> None:
        self._q.put(run_id)

    # -- introspection --------------------------------------------------------------

    def waiting(self) -> int:
        """Runs waiting to start, as ``PIXELMILL_MAX_QUEUE`` counts them."""
        return self._q.qsize()

    @property
    def depth(self) -> int:
        return self._q.qsize()

    @property
    def busy(self) -> int:
        return self._busy

    def queued_ids(self, older_than: float | None = None) -> list[str]:
        q = select(RunRow.id).where(RunRow.status == RunStatus.QUEUED.value).order_by(RunRow.created_at, RunRow.id)
        if older_than is not None:
            from datetime import datetime, timedelta, timezone
            cutoff = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=older_than)
            q = q.where(RunRow.created_at < cutoff)
        with self.runtime.store.engine.connect() as conn:
            return [r[0] for r in conn.execute(q)]

    # -- workers --------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            run_id = self._q.get()
            if run_id is None:
                return
            with self._lock:
                self._busy += 1
            try:
                self._execute(run_id)
            except Exception:  # a worker never dies with a run
                log.exception("run %s: unexpected error in the worker", run_id)
            finally:
                with self._lock:
                    self._busy -= 1

    def _execute(self, run_id: str) -> None:
        # A run created here is taken from memory; claim() in the executor still decides who runs it.
        execute_queued(self.runtime, self.workflows, run_id, self._created.pop(run_id, None))

    def _sweep(self) -> None:
        """Pick up runs queued by another process on this database, or left by one that died."""
        while not self._stop.wait(self.sweep_interval):
            try:
                if self.runtime.store.recover_interrupted(requeue=True):
                    log.warning("re-queued runs of a process that died")
                if self._q.qsize() == 0:
                    for run_id in self.queued_ids(older_than=self.sweep_interval):
                        self._q.put(run_id)
            except Exception:
                log.exception("queue sweep failed")


# -- executing one queued run: shared by the local pool above and the Celery worker task --------------------


def hand_back(store, run_ids: list[str]) -> list[str]:
    """Runs of this process (``store.owner``) still ``running`` go back to ``queued``, their running steps
    become ``interrupted``; finished steps keep their results, so whoever runs them next resumes them.
    Returns the runs handed back."""
    done = []
    with store.writing() as conn:
        for rid in run_ids:
            res = conn.execute(update(RunRow).where(RunRow.id == rid, RunRow.status == RunStatus.RUNNING.value,
                                                    RunRow.owner == store.owner)
                               .values(status=RunStatus.QUEUED.value, owner=None, finished_at=None))
            if res.rowcount:
                conn.execute(update(StepRow).where(StepRow.run_id == rid, StepRow.status == StepStatus.RUNNING.value)
                             .values(status=StepStatus.INTERRUPTED.value, finished_at=store_now()))
                done.append(rid)
    return done


def run_row(store, run_id: str) -> dict | None:
    t = RunRow.__table__
    with store.engine.connect() as conn:
        row = conn.execute(select(t.c.id, t.c.workflow, t.c.workflow_file, t.c.status, t.c.inputs, t.c.trigger,
                                  t.c.retry_of).where(t.c.id == run_id)).mappings().first()
    return dict(row) if row else None


def execute_queued(runtime, workflows, run_id: str, row: dict | None = None) -> bool:
    """Execute a queued run if this process wins its claim; False when it is gone, finished or taken.

    A run interrupted earlier resumes: the executor reuses the stored results of its finished steps."""
    row = row or run_row(runtime.store, run_id)
    if row is None or row["status"] != RunStatus.QUEUED.value:
        return False  # deleted, cancelled, or another worker has it
    try:
        loaded = workflows.for_run(row)
    except WorkflowInvalid as exc:
        return _fail_unrunnable(runtime, run_id, f"workflow '{row['workflow']}' cannot be loaded: {exc}")
    reuse = reused_outputs(runtime.store, row["retry_of"], loaded) if row["retry_of"] else None
    result = runtime.executor.execute(loaded, run_id, inputs=row["inputs"] or {}, trigger=row["trigger"] or {},
                                      reuse=reuse)
    return result is not None


def _fail_unrunnable(runtime, run_id: str, message: str) -> bool:
    store = runtime.store
    if not store.claim(run_id):
        return False
    ev = Event(EventKind.RUN_FINISHED, run_id, None,
               {"status": RunStatus.FAILED.value, "outputs": {}, "duration_s": 0.0,
                "error": {"type": "WorkflowInvalid", "message": message, "step_id": None}})
    event_id = store.record(ev)
    runtime.bus.publish(Event(ev.kind, run_id, None, ev.data, ev.ts, event_id))
    return True
