"""One worker process: a runtime pinned to a device, the served workflows, a heartbeat, and the Celery
worker loop (solo pool) that executes the run ids it receives.

SIGTERM is Celery's warm shutdown: the worker takes no new run and finishes the current one. If that run
is still going after ``shutdown_grace`` seconds, the worker hands it back (``queued`` again; finished steps
keep their results), sends its id to its queue again and exits at once: another worker resumes it, and
only the step that was mid-way runs again.
"""

from __future__ import annotations

import logging
import os
import threading

from celery import signals

from ..server.queue import execute_queued, hand_back, run_row
from ..server.workflows import WorkflowSet
from ..status import RunStatus
from .app import CelerySettings, make_celery, send_run
from .heartbeat import Heartbeat, stale_workers
from .routing import DEFAULT_QUEUE, queue_for

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, runtime, workflows: WorkflowSet, *, queues: list[str], device: str,
                 settings: CelerySettings, heartbeat_interval: float = 2.0, stale_after: float = 15.0,
                 shutdown_grace: float = 10.0):
        self.runtime, self.workflows, self.queues = runtime, workflows, list(queues)
        self.stale_after, self.shutdown_grace = stale_after, shutdown_grace
        self.heartbeat = Heartbeat(runtime, queues=self.queues, device=device, interval=heartbeat_interval)
        self.app = make_celery(settings, execute=self.execute)
        self._grace_timer: threading.Timer | None = None
        self._queue: str | None = None  # the queue the current run came from

    def execute(self, run_id: str, queue: str | None = None) -> bool:
        """Run a delivered run id. A run left ``running`` by a dead worker is taken back first and resumes
        from its stored step results; a run that is finished, or running on a live worker, is left alone
        (Celery delivers at least once; the store's claim makes it execute once)."""
        store = self.runtime.store
        row = run_row(store, run_id)
        if row is not None and row["status"] == RunStatus.RUNNING.value:  # redelivered: is its worker dead?
            if store.recover_interrupted(requeue=True, dead_owners=stale_workers(store, self.stale_after),
                                         run_id=run_id):
                row = run_row(store, run_id)
        self.heartbeat.current_run, self._queue = run_id, queue
        try:
            return execute_queued(self.runtime, self.workflows, run_id, row)
        finally:
            self.heartbeat.current_run = None

    # -- SIGTERM ------------------------------------------------------------------------------------

    def _shutting_down(self, sig=None, how=None, exitcode=None, **_kw) -> None:
        """Celery's ``worker_shutting_down`` (in its signal handler): on a warm shutdown, start the grace."""
        if how != "Warm" or self._grace_timer is not None:
            return
        run_id = self.heartbeat.current_run
        if run_id is not None:
            log.warning("%s: finishing run %s, for up to %g s (PIXELMILL_SHUTDOWN_GRACE); after that it is "
                        "handed back", sig, run_id, self.shutdown_grace)
        self._grace_timer = threading.Timer(self.shutdown_grace, self.grace_over)
        self._grace_timer.daemon = True
        self._grace_timer.start()

    def grace_over(self, exit_process: bool = True) -> list[str]:
        """The run still executing here goes back to its queue; then the process ends (its node threads
        with it, so nothing more of that run is written from here)."""
        run_id = self.heartbeat.current_run
        handed = hand_back(self.runtime.store, [run_id]) if run_id is not None else []
        for rid in handed:
            queue = self._queue
            if queue is None:
                row = run_row(self.runtime.store, rid)
                loaded = self.workflows.get(row["workflow"]) if row else None
                queue = queue_for(loaded) if loaded is not None else DEFAULT_QUEUE
            send_run(self.app, rid, queue)  # to the queue it came from
            log.warning("run %s outlasted the %g s shutdown grace: handed back to the queue, another worker "
                        "resumes it", rid, self.shutdown_grace)
        if exit_process:
            try:
                self.heartbeat.stop()
            finally:
                logging.shutdown()
                os._exit(0)
        return handed

    # -- the loop -----------------------------------------------------------------------------------

    def run(self, *, name: str | None = None, loglevel: str = "INFO") -> None:
        self.workflows.load()
        self.heartbeat.start()
        signals.worker_shutting_down.connect(self._shutting_down, weak=False, dispatch_uid=f"pixelmill-{id(self)}")
        argv = ["worker", "--pool=solo", "--concurrency=1", f"--queues={','.join(self.queues)}",
                f"--loglevel={loglevel}", "--without-gossip", "--without-mingle", "--prefetch-multiplier=1"]
        if name:
            argv.append(f"--hostname={name}")
        try:
            self.app.worker_main(argv)
        finally:
            if self._grace_timer is not None:
                self._grace_timer.cancel()
            self.heartbeat.stop()
            self.runtime.close()
