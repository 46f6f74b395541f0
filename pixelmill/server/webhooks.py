"""``/webhook/<path>``: start a workflow from an HTTP call, n8n style.

Auth per workflow (header token, HMAC-SHA256 of the raw body as ``sha256=<hex>``, basic), compared in
constant time; a bad credential gets 401 and creates no run. Respond modes: ``immediately`` (202 with the
run id and URLs), ``when_done`` (200 with the declared outputs, an error body naming the failing step, or
202 after ``respond_timeout``). A ``callback_url`` in the body (n8n: ``$execution.resumeUrl``) answers 202
at once and POSTs the result there when the run ends.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Blueprint, request

from ..fileinputs import Upload, for_trigger
from ..inputs import InputError
from .auth import check_auth
from .http import ApiError, error_response, json_response, read_json
from .queue import QueueFull
from .service import current_service, public_error

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__)

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
DROP_HEADERS = {"authorization", "proxy-authorization", "cookie"}
FAILED_CODE = {"failed": 500, "blocked": 422, "cancelled": 409, "interrupted": 500}


def _body(raw: bytes):
    ctype = (request.mimetype or "").lower()
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = {k: v if len(v) > 1 else v[0] for k, v in request.form.lists()}
        return {**form, **({"files": upload_summary()} if request.files else {})}
    if ctype == "application/json" or ctype.endswith("+json"):
        return read_json(required=False) if raw.strip() else {}
    if not raw.strip():
        return {}
    if raw.lstrip()[:1] in (b"{", b"["):
        return read_json()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_body", "the request body is neither JSON, a form nor UTF-8 text") from None


def _inputs(loaded, body, query: dict) -> dict:
    declared = loaded.workflow.inputs
    if isinstance(body, dict) and isinstance(body.get("inputs"), dict):
        return {**dict(body["inputs"]), **uploads(declared)}
    inputs = {k: v for k, v in query.items() if k in declared}
    if isinstance(body, dict):
        inputs.update({k: v for k, v in body.items() if k in declared})
    inputs.update(uploads(declared))
    return inputs


def uploads(declared) -> dict:
    """Multipart file parts for declared inputs (n8n's binary fields), as ``Upload`` values."""
    if (request.mimetype or "").lower() != "multipart/form-data":
        return {}
    return {k: Upload(f.read(), f.filename or "", (f.mimetype or "").lower())
            for k, f in request.files.items() if k in declared}


def upload_summary() -> dict:
    """What the stored trigger keeps of the file parts (never their bytes)."""
    return {k: {"filename": f.filename or "", "content_type": f.mimetype or ""} for k, f in request.files.items()}


def _callback_url(body, query: dict) -> str | None:
    url = body.get("callback_url") if isinstance(body, dict) else None
    url = url or query.get("callback_url")
    if url is None:
        return None
    parts = urlsplit(str(url)) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ApiError(400, "invalid_callback_url", f"callback_url must be an http(s) URL, not {url!r}")
    return url


def accepted(svc, run_id: str, workflow: str, base: str, status: str = "queued", code: int = 202):
    return json_response({
        "run_id": run_id, "workflow": workflow, "status": status,
        "status_url": f"{base}/api/v1/runs/{run_id}", "events_url": f"{base}/api/v1/runs/{run_id}/events",
        "message": "Workflow got started",
    }, code)


@bp.route("/webhook/<path:subpath>", methods=METHODS)
def webhook(subpath: str):
    svc = current_service()
    try:
        resp = _handle(svc, subpath)
    except ApiError as exc:
        resp = error_response(exc.status, exc.error, exc.message, exc.details, exc.headers)
    svc.metrics.webhook(resp.status_code)
    return resp


def _handle(svc, subpath: str):
    match = svc.workflows.catalog.match(subpath)
    if match is None:
        raise ApiError(404, "not_found", f"no workflow listens on /webhook/{subpath}")
    loaded, params = match
    hook = loaded.workflow.on.webhook
    if request.method not in hook.methods:
        raise ApiError(405, "method_not_allowed",
                       f"/webhook/{subpath} accepts {', '.join(hook.methods)}, not {request.method}",
                       headers={"Allow": ", ".join(hook.methods)})
    limit = svc.config.max_body
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload_too_large",
                       f"the request body has {request.content_length} bytes; the limit is {limit} (PIXELMILL_MAX_BODY)")
    raw = request.get_data(cache=True)
    dropped = check_auth(hook.auth, raw) | DROP_HEADERS
    body = _body(raw)
    query = {k: v if len(v) > 1 else v[0] for k, v in request.args.lists()}
    callback = _callback_url(body, query)
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in dropped}
    stored = for_trigger(loaded.workflow.inputs, body) if isinstance(body, dict) else body  # no data: URLs
    trigger = {"kind": "webhook", "path": subpath, "method": request.method, "params": params, "query": query,
               "headers": headers, "body": stored}
    try:
        run_id = svc.queue.create(loaded, _inputs(loaded, body, query), trigger=trigger, trigger_kind="webhook")
    except InputError as exc:
        raise ApiError(exc.status, "invalid_inputs", f"workflow '{loaded.name}': " + "; ".join(exc.problems),
                       exc.problems) from None
    except QueueFull as exc:
        raise ApiError(503, "queue_full", f"too busy, try again later: {exc}", headers={"Retry-After": "5"}) from None
    base = svc.base_url()
    if callback:
        svc.callbacks.register(run_id, callback, base)
        svc.queue.enqueue(run_id)
        return accepted(svc, run_id, loaded.name, base)
    if hook.respond == "immediately":
        svc.queue.enqueue(run_id)
        return accepted(svc, run_id, loaded.name, base)
    waiter = svc.waiter(run_id)
    svc.queue.enqueue(run_id)
    if not waiter.wait(hook.respond_timeout):
        svc.drop_waiter(run_id)
        run = svc.runtime.store.get_run(run_id)
        if run is None or run["status"] in ("queued", "running"):
            return accepted(svc, run_id, loaded.name, base, status=run["status"] if run else "queued")
    run = svc.runtime.store.get_run(run_id)
    if run is None:  # deleted through the API while we waited
        raise ApiError(410, "run_deleted", f"run {run_id} was deleted before it could be reported")
    result = svc.result_body(run, base)
    if run["status"] == "succeeded":
        return json_response(result, 200)
    error = public_error(run.get("error")) or {}
    step = error.get("step_id")
    message = error.get("message") or f"the run ended with status {run['status']}"
    result.update(error=f"run_{run['status']}", message=message, step_id=step)
    result["details"] = error
    return json_response(result, FAILED_CODE.get(run["status"], 500))


def init_app(app) -> None:
    app.register_blueprint(bp)
