"""Prometheus text exposition at ``/metrics``: runs by status (from the store), queue depth, busy workers,
step durations by node (histogram), webhook requests by code, callbacks by outcome."""

from __future__ import annotations

import threading
from collections import defaultdict

from flask import Blueprint, Response
from sqlalchemy import func, select

from ..db import RunRow
from ..events import Event, EventKind
from .context import current_service

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


def _label(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    def __init__(self, service):
        self.service = service
        self._lock = threading.Lock()
        self._step_counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self._step_sums: dict[tuple[str, str], float] = defaultdict(float)
        self._finished: dict[tuple[str, str], int] = defaultdict(int)
        self._webhooks: dict[str, int] = defaultdict(int)

    def on_event(self, event: Event) -> None:
        d = event.data
        if event.kind in (EventKind.STEP_FINISHED, EventKind.STEP_FAILED) and d.get("duration_s") is not None \
                and not d.get("reused"):
            key = (d.get("node", ""), d.get("status", ""))
            value = float(d["duration_s"])
            with self._lock:
                counts = self._step_counts[key]
                for i, bound in enumerate(BUCKETS):
                    if value <= bound:
                        counts[i] += 1
                counts[-1] += 1
                self._step_sums[key] += value
        elif event.kind is EventKind.RUN_FINISHED:
            with self._lock:
                self._finished[d.get("status", "")] += 1

    def webhook(self, code: int) -> None:
        with self._lock:
            self._webhooks[str(code)] += 1

    def _queue_lines(self) -> list[str]:
        """Celery mode: queued runs per queue, and worker processes alive by their heartbeats."""
        by_queue = getattr(self.service.queue, "depth_by_queue", None)
        if by_queue is None:
            return []
        from ..workers.heartbeat import list_workers

        workers = list_workers(self.service.runtime.store, self.service.config.worker_stale_after)
        lines = ["# HELP pixelmill_queue_depth_by_queue Queued runs by the worker queue they go to.",
                 "# TYPE pixelmill_queue_depth_by_queue gauge"]
        lines += [f'pixelmill_queue_depth_by_queue{{queue="{_label(q)}"}} {n}' for q, n in sorted(by_queue().items())]
        lines += ["# HELP pixelmill_worker_processes Worker processes by heartbeat state.",
                  "# TYPE pixelmill_worker_processes gauge",
                  f'pixelmill_worker_processes{{state="alive"}} {sum(w["alive"] for w in workers)}',
                  f'pixelmill_worker_processes{{state="stale"}} {sum(not w["alive"] for w in workers)}']
        return lines

    def render(self) -> str:
        svc = self.service
        with svc.runtime.store.engine.connect() as conn:
            by_status = dict(conn.execute(select(RunRow.status, func.count()).group_by(RunRow.status)).all())
        lines = ["# HELP pixelmill_runs Runs in the run store by status.", "# TYPE pixelmill_runs gauge"]
        for status in ("queued", "running", "succeeded", "failed", "blocked", "cancelled", "interrupted"):
            lines.append(f'pixelmill_runs{{status="{status}"}} {by_status.get(status, 0)}')
        lines += ["# HELP pixelmill_queue_depth Runs waiting for a worker (queued in the store).",
                  "# TYPE pixelmill_queue_depth gauge", f"pixelmill_queue_depth {by_status.get('queued', 0)}",
                  "# HELP pixelmill_workers Worker threads.", "# TYPE pixelmill_workers gauge",
                  f"pixelmill_workers {svc.queue.workers}",
                  "# HELP pixelmill_workers_busy Worker threads executing a run.",
                  "# TYPE pixelmill_workers_busy gauge", f"pixelmill_workers_busy {svc.queue.busy}",
                  *self._queue_lines(),
                  "# HELP pixelmill_workflows Workflows served.", "# TYPE pixelmill_workflows gauge",
                  f"pixelmill_workflows {len(svc.workflows.all())}"]
        with self._lock:
            finished = dict(self._finished)
            webhooks = dict(self._webhooks)
            steps = {k: (list(v), self._step_sums[k]) for k, v in self._step_counts.items()}
        lines += ["# HELP pixelmill_runs_finished_total Runs finished by this process, by status.",
                  "# TYPE pixelmill_runs_finished_total counter"]
        for status, n in sorted(finished.items()):
            lines.append(f'pixelmill_runs_finished_total{{status="{_label(status)}"}} {n}')
        lines += ["# HELP pixelmill_webhook_requests_total Webhook requests by response code.",
                  "# TYPE pixelmill_webhook_requests_total counter"]
        for code, n in sorted(webhooks.items()):
            lines.append(f'pixelmill_webhook_requests_total{{code="{code}"}} {n}')
        lines += ["# HELP pixelmill_step_duration_seconds Step durations by node type and status.",
                  "# TYPE pixelmill_step_duration_seconds histogram"]
        for (node, status), (counts, total) in sorted(steps.items()):
            labels = f'node="{_label(node)}",status="{_label(status)}"'
            for bound, n in zip(BUCKETS, counts, strict=False):
                lines.append(f'pixelmill_step_duration_seconds_bucket{{{labels},le="{bound:g}"}} {n}')
            lines.append(f'pixelmill_step_duration_seconds_bucket{{{labels},le="+Inf"}} {counts[-1]}')
            lines.append(f"pixelmill_step_duration_seconds_sum{{{labels}}} {total:.6f}")
            lines.append(f"pixelmill_step_duration_seconds_count{{{labels}}} {counts[-1]}")
        return "\n".join(lines) + "\n"


bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics_view():
    return Response(current_service().metrics.render(), mimetype="text/plain; version=0.0.4")


def init_app(app) -> None:
    app.register_blueprint(bp)
