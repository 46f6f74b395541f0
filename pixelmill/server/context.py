"""What views share: the app's service (``current_service``), error bodies without tracebacks, and the
404 lookups of workflows and runs. Imports nothing of the server but its schemas and HTTP plumbing, so
every blueprint can use it without import cycles."""

from __future__ import annotations

from flask import current_app

from . import schemas as s
from .http import ApiError

EXTENSION = "pixelmill"
NOT_FOUND = {404: s.ErrorOut}


def current_service():
    """The ``Service`` of the app handling this request (attached by ``create_app``)."""
    return current_app.extensions[EXTENSION]


def public_error(error: dict | None) -> dict | None:
    if not error:
        return None
    return {k: v for k, v in error.items() if k != "traceback"}


def workflow_or_404(svc, name: str):
    loaded = svc.workflows.get(name)
    if loaded is None:
        raise ApiError(404, "not_found", f"no workflow named '{name}' is served; GET /api/v1/workflows lists them")
    return loaded


def run_or_404(svc, run_id: str) -> dict:
    run = svc.runtime.store.get_run(run_id) if len(run_id) <= 64 else None
    if run is None:
        raise ApiError(404, "not_found", f"no run with id '{run_id}'")
    return run
