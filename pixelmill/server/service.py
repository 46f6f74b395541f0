"""The service object one app holds: runtime, served workflows, run queue, callbacks, scheduler, metrics,
and the waiters of ``when_done`` webhooks. Blueprints reach it with ``current_service()``."""

from __future__ import annotations

import logging
import threading

from flask import current_app, request

from ..calendar.service import CalendarService
from ..events import Event, EventKind
from .callbacks import CallbackDispatcher
from .config import ServerConfig
from .metrics import Metrics
from .queue import RunQueue
from .scheduler import Scheduler
from .workflows import WorkflowSet

log = logging.getLogger(__name__)

EXTENSION = "pixelmill"


def current_service() -> Service:
    return current_app.extensions[EXTENSION]


def public_error(error: dict | None) -> dict | None:
    if not error:
        return None
    return {k: v for k, v in error.items() if k != "traceback"}


class Service:
    def __init__(self, config: ServerConfig, runtime):
        self.config = config
        self.runtime = runtime
        self.workflows = WorkflowSet(config.workflows_dir, runtime.registry)
        self.queue = RunQueue(runtime, self.workflows, workers=config.workers, max_queue=config.max_queue,
                              sweep_interval=config.sweep_interval)
        self.callbacks = CallbackDispatcher(runtime, self.result_body, attempts=config.callback_attempts,
                                            backoff=config.callback_backoff, timeout=config.callback_timeout)
        self.scheduler = Scheduler(runtime, self.workflows, self.queue, misfire_grace=config.misfire_grace) \
            if config.scheduler else None
        self.calendar = CalendarService(runtime, self.workflows, self.queue, misfire_grace=config.misfire_grace)
        self.metrics = Metrics(self)
        self._waiters: dict[str, threading.Event] = {}
        self._waiters_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._unsubscribe = runtime.bus.subscribe(self._on_event)
        self.started = False

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.workflows.load()
        self.queue.start()
        self.callbacks.start()
        if self.scheduler is not None:
            self.scheduler.start()
        self.calendar.start(ticking=self.scheduler is not None)  # PIXELMILL_SCHEDULER=0: no ticking here
        self.started = True
        log.info("serving %d workflow(s) with %d worker(s)", len(self.workflows.all()), self.queue.workers)

    def close(self) -> None:
        """Stop taking runs, give running ones ``shutdown_grace`` seconds to finish. Runs still going after
        that are left as they are: the next start re-queues them (as after a crash) instead of cancelling."""
        if self.scheduler is not None:
            self.scheduler.stop()
        self.calendar.stop()
        self.callbacks.stop()
        self.queue.stop(timeout=self.config.shutdown_grace)
        self._unsubscribe()
        still = self.runtime.executor.active_runs()
        if still:
            log.warning("%d run(s) still running at shutdown; they will be re-queued on the next start: %s",
                        len(still), ", ".join(still))
            self.runtime.store.close()
            return
        self.runtime.close()

    def reload(self) -> dict:
        with self._reload_lock:
            result = self.workflows.load()
            result["schedules"] = self.scheduler.sync() if self.scheduler is not None else {}
            result["calendar"] = self.calendar.sync()
        log.info("reloaded workflows: %s", {k: v for k, v in result.items() if k != "problems"})
        return result

    # -- run completion ---------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        self.metrics.on_event(event)
        if event.kind is EventKind.RUN_FINISHED:
            with self._waiters_lock:
                waiter = self._waiters.pop(event.run_id, None)
            if waiter is not None:
                waiter.set()
            self.callbacks.on_finished(event.run_id)

    def waiter(self, run_id: str) -> threading.Event:
        ev = threading.Event()
        with self._waiters_lock:
            self._waiters[run_id] = ev
        return ev

    def drop_waiter(self, run_id: str) -> None:
        with self._waiters_lock:
            self._waiters.pop(run_id, None)

    def finish_cancelled(self, run_id: str) -> None:
        """A queued run cancelled before a worker took it: record its end so SSE and waiters see it."""
        ev = Event(EventKind.RUN_FINISHED, run_id, None,
                   {"status": "cancelled", "outputs": {}, "duration_s": 0.0,
                    "error": {"type": "Cancelled", "message": "the run was cancelled before it started",
                              "step_id": None}})
        event_id = self.runtime.store.record(ev)
        self.runtime.bus.publish(Event(ev.kind, run_id, None, ev.data, ev.ts, event_id))

    # -- URLs and result bodies ----------------------------------------------------------------

    def base_url(self) -> str:
        if self.config.public_url:
            return self.config.public_url
        try:
            return request.host_url.rstrip("/")
        except RuntimeError:  # outside a request
            return ""

    def with_urls(self, value, base: str):
        """Artifact references in outputs gain a download URL."""
        if isinstance(value, dict):
            out = {k: self.with_urls(v, base) for k, v in value.items()}
            if value.get("kind") == "artifact" and "run_id" in value and "name" in value:
                out["url"] = f"{base}/api/v1/runs/{value['run_id']}/artifacts/{value['name']}"
            return out
        if isinstance(value, list):
            return [self.with_urls(v, base) for v in value]
        return value

    def result_body(self, run: dict, base: str) -> dict:
        error = public_error(run.get("error"))
        return {
            "run_id": run["id"], "workflow": run["workflow"], "status": run["status"],
            "outputs": self.with_urls(run.get("outputs") or {}, base),
            "error": error, "step_id": (error or {}).get("step_id"),
            "run_url": f"{base}/api/v1/runs/{run['id']}",
            "events_url": f"{base}/api/v1/runs/{run['id']}/events",
        }
