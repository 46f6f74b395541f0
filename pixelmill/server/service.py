"""The service object one app holds: runtime, served workflows, run queue, callbacks, scheduler, metrics,
retention, the folder watcher, the run log, and the waiters of ``when_done`` webhooks. Blueprints reach it
with ``context.current_service()``."""

from __future__ import annotations

import logging
import threading

from flask import request

from ..calendar.service import CalendarService
from ..events import Event, EventKind
from .callbacks import CallbackDispatcher, CallbackRow
from .config import ConfigError, ServerConfig
from .context import public_error
from .metrics import Metrics
from .plugins import NodeRefresher
from .queue import RunQueue
from .retention import Retention
from .runlog import RunLog
from .scheduler import Scheduler
from .signing import Sealer, UrlSigner, load_key
from .subscriptions import DeliveryRow, Subscriptions
from .watcher import FolderWatcher
from .workflows import WorkflowSet

log = logging.getLogger(__name__)


class Service:
    def __init__(self, config: ServerConfig, runtime):
        self.config = config
        self.runtime = runtime
        self.workflows = WorkflowSet(config.workflows_dir, runtime.registry)
        self.queue = _make_queue(config, runtime, self.workflows)
        key = load_key(runtime.settings.home)
        self.signer = UrlSigner(key, ttl=config.signed_url_ttl)
        self._last_base = ""
        self.callbacks = CallbackDispatcher(runtime, self.result_body, attempts=config.callback_attempts,
                                            backoff=config.callback_backoff, timeout=config.callback_timeout,
                                            window=config.callback_window, max_delay=config.callback_max_delay,
                                            sealer=Sealer(key))
        self.subscriptions = Subscriptions(runtime, self.result_body, key, self.base_url,
                                           backoff=config.callback_backoff, window=config.callback_window,
                                           max_delay=config.callback_max_delay, timeout=config.callback_timeout)
        self.scheduler = Scheduler(runtime, self.workflows, self.queue, misfire_grace=config.misfire_grace) \
            if config.scheduler else None
        self.calendar = CalendarService(runtime, self.workflows, self.queue, misfire_grace=config.misfire_grace)
        self.metrics = Metrics(self)
        self.runlog = RunLog(runtime.store)
        self.retention = Retention(runtime.store, days=config.retention_days, max_runs=config.retention_max_runs,
                                   interval=config.retention_interval,
                                   run_tables=(CallbackRow.__table__, DeliveryRow.__table__))
        self.watcher = FolderWatcher(config.workflows_dir, self.reload, interval=config.watch_interval,
                                     debounce=config.watch_debounce) \
            if config.workflows_dir is not None and config.watch_interval > 0 else None
        self.nodes = NodeRefresher()
        self.handed_back: list[str] = []
        self._waiters: dict[str, threading.Event] = {}
        self._waiters_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._unsubscribe = runtime.bus.subscribe(self._on_event)
        self.started = False

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        result = self.workflows.load()
        for name in result["added"]:
            log.info("loaded workflow '%s' from %s", name, self.workflows.get(name).file)
        self.queue.start()
        self.callbacks.start()
        self.subscriptions.start()
        if self.scheduler is not None:
            self.scheduler.start()
        self.retention.start()
        if self.watcher is not None:
            self.watcher.start()
        self.calendar.start(ticking=self.scheduler is not None)  # PIXELMILL_SCHEDULER=0: no ticking here
        self.started = True
        log.info("serving %d workflow(s) with %d worker(s)", len(self.workflows.all()), self.queue.workers)

    def close(self) -> None:
        """Stop taking runs, give running ones ``shutdown_grace`` seconds to finish. Runs still going after
        that are handed back to the queue (``queued`` again, not cancelled) and logged; the next start
        picks them up as queued runs. ``handed_back`` lists them (the runner then exits at once)."""
        if self.watcher is not None:
            self.watcher.stop()
        self.retention.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        self.calendar.stop()
        self.callbacks.stop()
        self.subscriptions.stop()
        self.queue.stop(timeout=self.config.shutdown_grace)
        self._unsubscribe()
        still = self.runtime.executor.active_runs()
        if still:
            self.handed_back = self.queue.hand_back(still)
            log.warning("shutdown: %d run(s) outlasted the %g s grace period (PIXELMILL_SHUTDOWN_GRACE) and were "
                        "handed back to the queue; the next start runs them again: %s", len(self.handed_back),
                        self.config.shutdown_grace, ", ".join(self.handed_back) or "none")
            self.runtime.store.close()
            return
        self.runtime.close()

    def reload(self) -> dict:
        """Refresh the node registry from installed packages, reload the folder, re-sync schedules."""
        with self._reload_lock:
            registry, added_nodes, restart = self.nodes.refresh(self.runtime.registry)
            self.runtime.registry = registry
            self.workflows.registry = registry
            result = self.workflows.load()
            result["schedules"] = self.scheduler.sync() if self.scheduler is not None else {}
            result["calendar"] = self.calendar.sync()
        for key in ("added", "changed"):
            for name in result[key]:
                log.info("reload: %s workflow '%s' from %s", key, name, self.workflows.get(name).file)
        for name in result["removed"]:
            log.info("reload: removed workflow '%s'", name)
        if added_nodes:
            result["nodes_added"] = added_nodes
        if restart:
            result["restart_needed"] = [f"node package upgraded ({item}); restart pixelmill serve to load it"
                                        for item in restart]
        log.info("reloaded: %d served, %d added, %d changed, %d removed, %d file problem(s)",
                 len(self.workflows.all()), len(result["added"]), len(result["changed"]), len(result["removed"]),
                 len(result["problems"]))
        return result

    # -- run completion ---------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        self.metrics.on_event(event)
        self.runlog.on_event(event)
        if event.kind is EventKind.RUN_FINISHED:
            with self._waiters_lock:
                waiter = self._waiters.pop(event.run_id, None)
            if waiter is not None:
                waiter.set()
            self.callbacks.on_finished(event.run_id)
            self.subscriptions.on_finished(event.run_id)

    def waiter(self, run_id: str) -> threading.Event:
        ev = threading.Event()
        with self._waiters_lock:
            self._waiters[run_id] = ev
        return ev

    def release_waiters(self) -> None:
        """At shutdown: ``when_done`` calls stop waiting and answer 202 with the run's URL."""
        with self._waiters_lock:
            waiters, self._waiters = list(self._waiters.values()), {}
        for ev in waiters:
            ev.set()

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
            self._last_base = request.host_url.rstrip("/")
        except RuntimeError:  # outside a request: the base the last request came in on
            pass
        return self._last_base

    def with_urls(self, value, base: str):
        """Artifact references in outputs gain a download URL, signed for ``signed_url_ttl`` seconds, so a
        client can fetch it without the API token."""
        if isinstance(value, dict):
            out = {k: self.with_urls(v, base) for k, v in value.items()}
            if value.get("kind") == "artifact" and "run_id" in value and "name" in value:
                out["url"] = self.signer.artifact_url(base, value["run_id"], value["name"])
            return out
        if isinstance(value, list):
            return [self.with_urls(v, base) for v in value]
        return value

    def result_body(self, run: dict, base: str) -> dict:
        """The one body of sync replies, callbacks and subscription deliveries: ``status`` plus, when the
        run did not succeed, ``error: {step_id, node, type, message}``."""
        error = error_shape(run)
        return {
            "run_id": run["id"], "workflow": run["workflow"], "status": run["status"],
            "outputs": self.with_urls(run.get("outputs") or {}, base),
            "error": error, "step_id": (error or {}).get("step_id"),
            "run_url": f"{base}/api/v1/runs/{run['id']}",
            "events_url": f"{base}/api/v1/runs/{run['id']}/events",
        }


def error_shape(run: dict) -> dict | None:
    """``{step_id, node, type, message}`` of a run that did not succeed (extra keys such as a moderation
    ``rule`` are kept after these four)."""
    if run["status"] in ("succeeded", "queued", "running"):
        return None
    error = public_error(run.get("error")) or {}
    out = {"step_id": error.get("step_id"), "node": error.get("node"),
           "type": error.get("type") or f"run_{run['status']}",
           "message": error.get("message") or f"the run ended with status {run['status']}"}
    out.update({k: v for k, v in error.items() if k not in out})
    return out


def _make_queue(config: ServerConfig, runtime, workflows) -> RunQueue:
    """The local pool (default), or in celery mode a queue that only sends run ids to the broker."""
    if config.executor == "celery":
        from ..workers.app import CelerySettings
        from .celery_queue import CeleryRunQueue

        try:
            settings = CelerySettings.from_env()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return CeleryRunQueue(runtime, workflows, settings, max_queue=config.max_queue,
                              sweep_interval=config.sweep_interval, stale_after=config.worker_stale_after,
                              model_queues=config.model_queues)
    return RunQueue(runtime, workflows, workers=config.workers, max_queue=config.max_queue,
                    sweep_interval=config.sweep_interval)
