"""``GET /api/v1/workers``: the ``pixelmill worker`` processes known to the store (celery mode), from their
heartbeats: queues, device, loaded models, the run each executes, and whether it is alive."""

from __future__ import annotations

from flask import Blueprint
from pydantic import BaseModel

from ..workers.heartbeat import list_workers
from .auth import require_bearer
from .context import current_service
from .http import endpoint, json_response

bp = Blueprint("workers", __name__, url_prefix="/api/v1")
require_bearer(bp)


class WorkerOut(BaseModel):
    id: str
    hostname: str
    queues: list[str]
    device: str
    models: list
    current_run: str | None
    started_at: str
    last_seen: str
    alive: bool


class WorkersOut(BaseModel):
    executor: str
    workers: list[WorkerOut]


@endpoint(bp, "/workers", "GET", summary="Worker processes, their queues, device, models and current run",
          tag="service", responses={200: WorkersOut})
def workers():
    svc = current_service()
    items = list_workers(svc.runtime.store, svc.config.worker_stale_after)
    return json_response({"executor": svc.config.executor, "workers": items})


def init_app(app) -> None:
    app.register_blueprint(bp)
