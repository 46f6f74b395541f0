"""One worker process: a runtime pinned to a device, the served workflows, a heartbeat, and the Celery
worker loop (solo pool) that executes the run ids it receives."""

from __future__ import annotations

import logging

from ..server.queue import execute_queued, run_row
from ..server.workflows import WorkflowSet
from ..status import RunStatus
from .app import CelerySettings, make_celery
from .heartbeat import Heartbeat, stale_workers

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, runtime, workflows: WorkflowSet, *, queues: list[str], device: str,
                 settings: CelerySettings, heartbeat_interval: float = 2.0, stale_after: float = 15.0):
        self.runtime, self.workflows, self.queues = runtime, workflows, list(queues)
        self.stale_after = stale_after
        self.heartbeat = Heartbeat(runtime, queues=self.queues, device=device, interval=heartbeat_interval)
        self.app = make_celery(settings, execute=self.execute)

    def execute(self, run_id: str) -> bool:
        """Run a delivered run id. A run left ``running`` by a dead worker is taken back first and resumes
        from its stored step results; a run that is finished, or running on a live worker, is left alone
        (Celery delivers at least once; the store's claim makes it execute once)."""
        store = self.runtime.store
        row = run_row(store, run_id)
        if row is not None and row["status"] == RunStatus.RUNNING.value:  # redelivered: is its worker dead?
            if store.recover_interrupted(requeue=True, dead_owners=stale_workers(store, self.stale_after),
                                         run_id=run_id):
                row = run_row(store, run_id)
        self.heartbeat.current_run = run_id
        try:
            return execute_queued(self.runtime, self.workflows, run_id, row)
        finally:
            self.heartbeat.current_run = None

    def run(self, *, name: str | None = None, loglevel: str = "INFO") -> None:
        self.workflows.load()
        self.heartbeat.start()
        argv = ["worker", "--pool=solo", "--concurrency=1", f"--queues={','.join(self.queues)}",
                f"--loglevel={loglevel}", "--without-gossip", "--without-mingle", "--prefetch-multiplier=1"]
        if name:
            argv.append(f"--hostname={name}")
        try:
            self.app.worker_main(argv)
        finally:
            self.heartbeat.stop()
            self.runtime.close()
