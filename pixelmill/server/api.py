"""The REST API under ``/api/v1``: workflows, runs, artifacts, nodes, reload. Every view is declared with
``endpoint()`` so the OpenAPI document lists it with its pydantic models."""

from __future__ import annotations

import logging
import mimetypes
from datetime import datetime

from flask import Blueprint, request
from werkzeug.routing import BaseConverter

from .. import __version__
from ..fileinputs import for_trigger
from ..inputs import InputError
from ..loader import load_text
from ..problems import WorkflowInvalid
from . import schemas as s
from .auth import check_bearer, require_bearer, webhook_auth_guard
from .context import NOT_FOUND, current_service, public_error
from .context import run_or_404 as _run_or_404
from .context import workflow_or_404 as _workflow_or_404
from .downloads import send_artifact
from .http import ApiError, accepted, callback_url, endpoint, json_response, parse_body, parse_query
from .inline import add_base64, image_reply, wants_base64, wants_image
from .queue import QueueFull
from .signing import redact_value
from .typed_inputs import check_json_inputs
from .uploads import upload_summary, uploads

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api/v1")
root = Blueprint("root", __name__)
require_bearer(bp, exempt=("api.get_artifact",))  # a signed artifact URL needs no token (checked in the view)



class WorkflowName(BaseConverter):
    """A workflow name in a path; never 'validate', so /workflows/validate is only the validate endpoint
    (and its 405 lists only POST)."""

    regex = r"(?!validate(?:/|$))[^/]+"


def _summary(svc, loaded, base: str) -> dict:
    wf = loaded.workflow
    hook = wf.on.webhook
    jobs = {}
    if svc.scheduler is not None:
        jobs = {j["id"]: j["next_run"] for j in svc.scheduler.jobs() if j["workflow"] == loaded.name}
    schedules = []
    for sched in wf.on.schedule:
        nxt = next((v for k, v in jobs.items() if k.startswith(f"{loaded.name}#{len(schedules)}:")), None)
        schedules.append({"cron": sched.cron, "interval": sched.interval, "timezone": sched.timezone,
                          "misfire": sched.misfire, "next_run": nxt})
    return {
        "name": wf.name, "description": wf.description, "file": loaded.file, "steps": len(wf.steps),
        "webhook": None if hook is None else {
            "path": hook.path, "url": f"{base}/webhook/{hook.path.strip('/')}", "methods": hook.methods,
            "respond": hook.respond, "respond_timeout": hook.respond_timeout, "auth": hook.auth.type},
        "schedules": schedules,
    }


def _duration(run: dict) -> float | None:
    if run.get("started_at") and run.get("finished_at"):
        a = datetime.fromisoformat(run["started_at"])
        b = datetime.fromisoformat(run["finished_at"])
        return round((b - a).total_seconds(), 6)
    return None


def _run_out(svc, run: dict, base: str) -> dict:
    return {
        "id": run["id"], "workflow": run["workflow"], "status": run["status"], "trigger_kind": run["trigger_kind"],
        "created_at": run["created_at"], "started_at": run["started_at"], "finished_at": run["finished_at"],
        "duration_s": _duration(run), "retry_of": run.get("retry_of"), "inputs": run.get("inputs"),
        "outputs": svc.with_urls(run.get("outputs"), base) if run.get("outputs") is not None else None,
        "error": public_error(run.get("error")), "url": f"{base}/api/v1/runs/{run['id']}",
    }


def _step_out(svc, step: dict, base: str) -> dict:
    return {
        "step_id": step["step_id"], "node_type": step["node_type"], "node_version": step["node_version"],
        "status": step["status"], "attempts": step["attempts"], "started_at": step["started_at"],
        "finished_at": step["finished_at"], "duration_s": step["duration_s"], "inputs": step["inputs"],
        "outputs": svc.with_urls(step["outputs"], base) if step["outputs"] is not None else None,
        "error": public_error(step["error"]),
    }


# -- health ----------------------------------------------------------------------------------------


@endpoint(root, "/healthz", "GET", summary="Liveness and basic state", tag="service", auth=False,
          responses={200: s.HealthOut})
def healthz():
    svc = current_service()
    return json_response(s.HealthOut(
        status="ok", version=__version__, workflows=len(svc.workflows.all()), queue_depth=svc.queue.depth,
        workers=svc.queue.workers, workers_busy=svc.queue.busy, scheduler=svc.scheduler is not None))


# -- workflows -------------------------------------------------------------------------------------


@endpoint(bp, "/workflows", "GET", summary="List served workflows", tag="workflows",
          responses={200: s.WorkflowList})
def list_workflows():
    svc = current_service()
    base = svc.base_url()
    return json_response({"items": [_summary(svc, wf, base) for wf in svc.workflows.all()],
                          "problems": [p.to_dict() for p in svc.workflows.catalog.problems]})


@endpoint(bp, "/workflows/<wfname:name>", "GET", summary="Show a workflow", tag="workflows",
          responses={200: s.WorkflowDetail, **NOT_FOUND})
def show_workflow(name: str):
    svc = current_service()
    loaded = _workflow_or_404(svc, name)
    wf = loaded.workflow
    body = _summary(svc, loaded, svc.base_url())
    body.update(inputs={k: {**v.model_dump(mode="json"), "required": v.required} for k, v in wf.inputs.items()}, outputs=wf.outputs,
                step_list=[st.model_dump(mode="json", by_alias=True, exclude_defaults=True) for st in wf.steps],
                source=loaded.source)
    return json_response(body)


@endpoint(bp, "/workflows/validate", "POST", summary="Validate a workflow file's text", tag="workflows",
          body=s.ValidateIn, responses={200: s.ValidateOut, 400: s.ErrorOut, 422: s.ErrorOut})
def validate_workflow():
    svc = current_service()
    req = parse_body(s.ValidateIn)
    try:
        loaded = load_text(req.yaml, req.file, svc.runtime.registry)
    except WorkflowInvalid as exc:
        return json_response({"valid": False, "problems": [p.to_dict() for p in exc.problems]})
    except Exception as exc:  # noqa: BLE001 - a loader defect must never become a 500 for this text
        log.warning("validate: the loader failed on %s with %s (a loader defect: it should report a problem)",
                    req.file, type(exc).__name__)
        problem = {"file": req.file, "line": 1, "col": 1, "hint": "",
                   "message": f"this file could not be checked ({type(exc).__name__}); simplify it, e.g. "
                              "remove recursive or deeply nested YAML aliases"}
        raise ApiError(422, "unprocessable_workflow", f"{req.file}:1:1: {problem['message']}", [problem]) from None
    return json_response({"valid": True, "name": loaded.name, "steps": len(loaded.order), "problems": []})


@endpoint(bp, "/workflows/<wfname:name>/runs", "POST", summary="Start a run of a workflow", tag="workflows",
          body=s.TriggerIn, body_required=False,
          responses={202: s.RunAccepted, 400: s.ErrorOut, 403: s.ErrorOut, **NOT_FOUND, 503: s.ErrorOut})
def trigger_workflow(name: str):
    svc = current_service()
    loaded = _workflow_or_404(svc, name)
    webhook_auth_guard(loaded, svc.config.api_token)
    if (request.mimetype or "").lower() == "multipart/form-data":  # form fields and file parts are inputs
        form = {k: v for k, v in request.form.items() if k != "callback_url"}
        req = s.TriggerIn(inputs={**form, **uploads(loaded.workflow.inputs)},
                          callback_url=request.form.get("callback_url") or None)
        stored = {"inputs": form, "files": upload_summary(), "callback_url": req.callback_url}
    else:
        req = parse_body(s.TriggerIn, required=False)
        problems = check_json_inputs(loaded.workflow.inputs, req.inputs)
        if problems:
            raise ApiError(400, "invalid_inputs", f"workflow '{name}': " + "; ".join(problems), problems)
        stored = {**req.model_dump(), "inputs": for_trigger(loaded.workflow.inputs, req.inputs)}
    callback = callback_url({"callback_url": req.callback_url}, {}) if req.callback_url is not None else None
    try:
        run_id = svc.queue.create(loaded, req.inputs, trigger=redact_value({"kind": "api", "body": stored}),
                                  trigger_kind="api")
    except InputError as exc:
        raise ApiError(exc.status, "invalid_inputs", f"workflow '{name}': " + "; ".join(exc.problems), exc.problems) from None
    except QueueFull as exc:
        raise ApiError(503, "queue_full", str(exc), headers={"Retry-After": "5"}) from None
    base = svc.base_url()
    if callback:
        svc.callbacks.register(run_id, callback, base)
    svc.queue.enqueue(run_id)
    return accepted(run_id, name, base)


# -- runs ------------------------------------------------------------------------------------------


@endpoint(bp, "/runs", "GET", summary="List runs, newest first", tag="runs", query=s.RunListQuery,
          responses={200: s.RunList, 400: s.ErrorOut})
def list_runs():
    svc = current_service()
    q = parse_query(s.RunListQuery)
    store = svc.runtime.store
    items = store.list_runs(workflow=q.workflow, status=q.status, limit=q.limit, offset=q.offset)
    total = store.count_runs(workflow=q.workflow, status=q.status)
    base = svc.base_url()
    return json_response({"items": [_run_out(svc, r, base) for r in items], "total": total, "limit": q.limit,
                          "offset": q.offset})


@endpoint(bp, "/runs/<run_id>", "GET", summary="Show a run with its steps, timings, outputs and errors",
          tag="runs", responses={200: s.RunDetail, **NOT_FOUND})
def show_run(run_id: str):
    """``Accept: image/png`` on a succeeded run: its first image; ``?inline=base64``: artifact data inline."""
    svc = current_service()
    run = _run_or_404(svc, run_id)
    artifacts = svc.runtime.store.artifacts
    if run["status"] == "succeeded" and wants_image():
        return image_reply(run.get("outputs") or {}, artifacts, run_id)
    base = svc.base_url()
    body = _run_out(svc, run, base)
    if wants_base64() and body["outputs"] is not None:
        body["outputs"] = add_base64(body["outputs"], artifacts, svc.config.max_body)
    body.update(trigger=run.get("trigger"), steps=[_step_out(svc, st, base) for st in run["steps"]],
                events_url=f"{base}/api/v1/runs/{run_id}/events", artifacts_url=f"{base}/api/v1/runs/{run_id}/artifacts",
                callback=svc.callbacks.status(run_id), deliveries=svc.subscriptions.deliveries(run_id))
    return json_response(body)


@endpoint(bp, "/runs/<run_id>/cancel", "POST", summary="Cancel a queued or running run", tag="runs",
          body_required=False, responses={200: s.CancelOut, **NOT_FOUND})
def cancel_run(run_id: str):
    svc = current_service()
    before = _run_or_404(svc, run_id)["status"]
    status = svc.runtime.executor.cancel(run_id)
    if before == "queued" and status == "cancelled":
        svc.finish_cancelled(run_id)
    return json_response({"run_id": run_id, "status": status})


@endpoint(bp, "/runs/<run_id>/retry", "POST", summary="Retry a finished run from its failed step", tag="runs",
          body_required=False,
          responses={202: s.RunAccepted, 403: s.ErrorOut, **NOT_FOUND, 409: s.ErrorOut, 503: s.ErrorOut})
def retry_run(run_id: str):
    svc = current_service()
    run = _run_or_404(svc, run_id)
    loaded = _workflow_or_404(svc, run["workflow"])
    webhook_auth_guard(loaded, svc.config.api_token)
    if run["status"] in ("queued", "running", "succeeded"):
        raise ApiError(409, "not_retryable", f"run {run_id} is {run['status']}; only failed, blocked, cancelled "
                                             "or interrupted runs can be retried")
    try:
        new_id = svc.queue.create(loaded, run.get("inputs") or {}, trigger=run.get("trigger") or {},
                                  trigger_kind="retry", retry_of=run_id)
    except QueueFull as exc:
        raise ApiError(503, "queue_full", str(exc), headers={"Retry-After": "5"}) from None
    svc.queue.enqueue(new_id)
    return accepted(new_id, loaded.name, svc.base_url())


@endpoint(bp, "/runs/<run_id>", "DELETE", summary="Delete a finished run with its artifacts", tag="runs",
          responses={204: None, **NOT_FOUND, 409: s.ErrorOut})
def delete_run(run_id: str):
    svc = current_service()
    run = _run_or_404(svc, run_id)
    if run["status"] in ("queued", "running"):
        raise ApiError(409, "run_active", f"run {run_id} is {run['status']}; cancel it first")
    svc.runtime.store.delete_run(run_id)
    return "", 204


# -- artifacts -------------------------------------------------------------------------------------


# what artifacts are served as (by file name); anything else is application/octet-stream
ARTIFACT_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "video/mp4", "video/webm",
                  "application/json", "text/plain", "application/octet-stream")


def artifact_type(name: str) -> str:
    guessed = mimetypes.guess_type(name)[0]
    return guessed if guessed in ARTIFACT_TYPES else "application/octet-stream"


@endpoint(bp, "/runs/<run_id>/artifacts", "GET", summary="List a run's artifacts", tag="artifacts",
          responses={200: s.ArtifactList, **NOT_FOUND})
def list_artifacts(run_id: str):
    svc = current_service()
    _run_or_404(svc, run_id)
    base = svc.base_url()
    items = [{"name": a.name, "size": a.size, "media_type": artifact_type(a.name),
              "url": f"{base}/api/v1/runs/{run_id}/artifacts/{a.name}"}
             for a in svc.runtime.store.artifacts.list(run_id)]
    return json_response({"items": items})


@endpoint(bp, "/runs/<run_id>/artifacts/<name>", "GET", summary="Download an artifact", tag="artifacts",
          responses={200: ARTIFACT_TYPES, **NOT_FOUND})
def get_artifact(run_id: str, name: str):
    """With ``expires`` and ``sig`` from a signed URL (the ``url`` of an artifact in outputs) no token is
    needed; a wrong or expired signature gets 403, never a fallback to open access. The file comes from
    the artifact store, and only when it lists a file of that name for the run."""
    svc = current_service()
    if "sig" in request.args or "expires" in request.args:
        why = svc.signer.check(run_id, name, request.args.get("expires"), request.args.get("sig"))
        if why:
            raise ApiError(403, "bad_signature", f"this artifact URL's signature is {why}; get a fresh URL "
                                                 f"from GET /api/v1/runs/{run_id[:64]}")
    else:
        check_bearer(svc.config.api_token)
    _run_or_404(svc, run_id)
    artifacts = svc.runtime.store.artifacts
    found = next((a for a in artifacts.list(run_id) if a.name == name), None)
    try:
        if found is not None:
            return send_artifact(artifacts, run_id, name, artifact_type(name), size=found.size)
    except FileNotFoundError:  # deleted between the listing and the open
        pass
    shown = name if len(name) <= 80 else name[:77] + "..."
    raise ApiError(404, "not_found", f"run {run_id} has no artifact named {shown!r}")


# -- nodes, reload -----------------------------------------------------------------------------------


@endpoint(bp, "/nodes", "GET", summary="Node catalog with config, input and output schemas", tag="nodes",
          responses={200: s.NodeList})
def list_nodes():
    svc = current_service()
    return json_response({"items": [{
        "type": i.type, "version": i.version, "source": i.source, "gpu": i.cls.uses_gpu,
        "deterministic": i.cls.deterministic, "description": (i.cls.__doc__ or "").strip(),
        "config": i.cls.Config.model_json_schema(), "inputs": i.cls.Inputs.model_json_schema(),
        "outputs": i.cls.Outputs.model_json_schema(),
    } for i in svc.runtime.registry]})


@endpoint(bp, "/reload", "POST", summary="Reload workflows from the folder and re-sync schedules",
          tag="service", body_required=False, responses={200: s.ReloadOut})
def reload():
    svc = current_service()
    return json_response(svc.reload())


def init_app(app) -> None:
    app.url_map.converters["wfname"] = WorkflowName
    app.register_blueprint(bp)
    app.register_blueprint(root)
