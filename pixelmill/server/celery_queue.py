"""The run queue in celery mode (``PIXELMILL_EXECUTOR=celery``): this process writes queued runs to the store
and sends only their ids to the broker; ``pixelmill worker`` processes execute them.

A sweeper takes back runs of workers that died (their heartbeat stopped, or their pid is gone on this host)
and sends them again with queued runs that were never sent (a crash between commit and send); a relay
reads the events the workers write to the store and publishes them on this process's bus, so SSE streams,
``respond: when_done`` waiters and callbacks see runs that execute elsewhere.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import func, or_, select

from ..db import EventRow, RunRow
from ..events import Event, EventKind
from ..status import RunStatus
from ..workers.app import CelerySettings, make_celery, send_run
from ..workers.heartbeat import forget_workers, stale_workers
from ..workers.routing import DEFAULT_QUEUE, check_visibility_timeout, queue_for
from .queue import RunQueue, run_row

log = logging.getLogger(__name__)


class CeleryRunQueue(RunQueue):
    def __init__(self, runtime, workflows, settings: CelerySettings, *, max_queue: int = 10_000,
                 sweep_interval: float = 10.0, stale_after: float = 15.0, resend_after: float = 300.0,
                 relay_interval: float = 0.05, count_ttl: float = 0.25, model_queues: bool = False):
        super().__init__(runtime, workflows, workers=1, max_queue=max_queue, sweep_interval=sweep_interval)
        self.workers = 0  # no runs execute in this process
        self.settings = settings
        self.app = make_celery(settings)
        self.stale_after, self.resend_after = stale_after, resend_after
        self._sent: dict[str, float] = {}
        self.relay = EventRelay(runtime, interval=relay_interval)
        self.count_ttl = count_ttl
        self.model_queues = model_queues
        self._count, self._counted_at = 0, float("-inf")
        self._count_lock = threading.Lock()

    def start(self) -> list[str]:
        for warning in check_visibility_timeout(self.settings.visibility_timeout, self.workflows.all()):
            log.warning("%s", warning)
        recovered = self._recover()
        for run_id in self.queued_ids():
            self.enqueue(run_id)
        self.relay.start()
        sweeper = threading.Thread(target=self._sweep, name="pixelmill-celery-sweeper", daemon=True)
        sweeper.start()
        self._threads.append(sweeper)
        return recovered

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.writer.stop()
        self.relay.stop()
        for t in self._threads:
            t.join(timeout)

    def hand_back(self, run_ids: list[str]) -> list[str]:
        return []  # nothing executes here

    def enqueue(self, run_id: str) -> None:
        row = self._created.pop(run_id, None) or run_row(self.runtime.store, run_id)
        if row is None:
            return
        loaded = self.workflows.get(row["workflow"])
        send_run(self.app, run_id, self.queue_of(loaded))
        self._sent[run_id] = time.monotonic()

    def queue_of(self, loaded) -> str:
        return queue_for(loaded, per_model=self.model_queues) if loaded is not None else DEFAULT_QUEUE

    def create(self, loaded, inputs, **kw) -> str:
        run_id = super().create(loaded, inputs, **kw)
        with self._count_lock:
            self._count += 1  # until the next count, runs accepted here add to the last one
        return run_id

    def waiting(self) -> int:
        """Queued runs in the shared store, from every API process (``PIXELMILL_MAX_QUEUE`` bounds them
        all): counted at most every ``count_ttl`` seconds, plus the runs this process accepted since."""
        now = time.monotonic()
        with self._count_lock:
            if now - self._counted_at >= self.count_ttl:
                self._count = self.runtime.store.count_runs(status=RunStatus.QUEUED.value)
                self._counted_at = now
            return self._count

    @property
    def depth(self) -> int:
        return len(self.queued_ids())

    def depth_by_queue(self) -> dict[str, int]:
        """Queued runs in the store by the queue their workflow routes to (for /metrics)."""
        t = RunRow.__table__
        with self.runtime.store.engine.connect() as conn:
            rows = conn.execute(select(t.c.workflow, func.count()).where(t.c.status == RunStatus.QUEUED.value)
                                .group_by(t.c.workflow)).all()
        out: dict[str, int] = {}
        for workflow, n in rows:
            queue = self.queue_of(self.workflows.get(workflow))
            out[queue] = out.get(queue, 0) + n
        return out

    def _recover(self) -> list[str]:
        store = self.runtime.store
        recovered = store.recover_interrupted(requeue=True, dead_owners=stale_workers(store, self.stale_after))
        if recovered:
            log.warning("re-queued %d run(s) of worker(s) that died: %s", len(recovered), ", ".join(recovered))
        return recovered

    def _sweep(self) -> None:
        while not self._stop.wait(self.sweep_interval):
            try:
                for run_id in self._recover():
                    self.enqueue(run_id)
                forget_workers(self.runtime.store, 20 * self.stale_after)  # long dead: off /api/v1/workers
                now = time.monotonic()
                for run_id in self.queued_ids(older_than=self.sweep_interval):
                    if now - self._sent.get(run_id, 0.0) > self.resend_after:
                        self.enqueue(run_id)  # never sent, or lost: the claim keeps a duplicate harmless
                for run_id in [r for r, t in self._sent.items() if now - t > 2 * self.resend_after]:
                    self._sent.pop(run_id, None)
            except Exception:
                log.exception("celery queue sweep failed")


class EventRelay:
    """Publishes on this process's bus the events other processes write to the store.

    Event ids come from one sequence and may commit out of order, so an id below the highest one read that
    is not there yet is a gap: it is asked for again on each poll until it appears or ``grace`` seconds
    pass (a rolled-back insert leaves a gap for good). Each poll reads only new rows and gaps."""

    def __init__(self, runtime, *, interval: float = 0.05, grace: float = 10.0):
        self.store, self.bus = runtime.store, runtime.bus
        self.interval, self.grace = interval, grace
        self._gaps: dict[int, float] = {}
        self._here: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pixelmill-event-relay", daemon=True)

    def start(self) -> None:
        t = EventRow.__table__
        with self.store.engine.connect() as conn:
            self._high = conn.execute(select(func.max(t.c.id))).scalar() or 0
        self._unsubscribe = self.bus.subscribe(self._published_here)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._unsubscribe()

    def _published_here(self, ev: Event) -> None:
        if ev.id is not None and threading.current_thread() is not self._thread:
            with self._lock:
                self._here.add(ev.id)  # published by this process (a cancelled queued run): not again

    def poll(self) -> int:
        t = EventRow.__table__
        now = time.monotonic()
        self._gaps = {i: t0 for i, t0 in self._gaps.items() if now - t0 < self.grace}
        cond = t.c.id > self._high
        if self._gaps:
            cond = or_(cond, t.c.id.in_(sorted(self._gaps)))
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(t).where(cond).order_by(t.c.id)).mappings().all()
        n = 0
        for r in rows:
            rid = r["id"]
            if rid in self._gaps:
                del self._gaps[rid]
            elif rid > self._high:
                if rid - self._high <= 10_000:
                    for missing in range(self._high + 1, rid):
                        self._gaps[missing] = now
                self._high = rid
            with self._lock:
                if rid in self._here:
                    self._here.discard(rid)
                    continue
            if r["kind"] == EventKind.RUN_QUEUED.value:
                continue  # written by an API process when it accepted the run
            self.bus.publish(Event(EventKind(r["kind"]), r["run_id"], r["step_id"], r["data"] or {}, r["ts"], rid))
            n += 1
        return n

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:
                log.exception("event relay failed")
