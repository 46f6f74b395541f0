"""``/webhook/<path>``: start a workflow from an HTTP call, n8n style.

Auth per workflow (header token, HMAC-SHA256 of the raw body as ``sha256=<hex>``, basic), compared in
constant time; a bad credential gets 401 and creates no run. Respond modes: ``immediately`` (202 with the
run id and URLs), ``when_done`` (200 with the declared outputs, or the image itself on ``Accept:
image/png``; a failed run gets ``status`` plus ``error: {step_id, node, type, message}``; 202 ``status:
running`` with the status URL after ``respond_timeout``). A ``callback_url`` in the body (n8n:
``$execution.resumeUrl``) answers 202 at once and POSTs the result there when the run ends.
"""

from __future__ import annotations

import logging

from flask import Blueprint, request

from ..fileinputs import for_trigger
from ..inputs import InputError
from ..problems import did_you_mean
from .auth import check_auth
from .context import current_service
from .http import ApiError, accepted, callback_url, error_response, json_response, read_json
from .inline import add_base64, image_reply, wants_base64, wants_image
from .queue import QueueFull
from .signing import redact_value
from .uploads import is_multipart, upload_summary, uploads

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


RESERVED = {"callback_url"}  # body keys the service itself reads


def _inputs(loaded, body, query: dict) -> dict:
    """Inputs from ``body.inputs`` (an object), else from the body's and query's declared keys. Body keys
    that are not inputs get 400 naming the accepted ones, unless ``on.webhook.extra_inputs: ignore``."""
    declared = loaded.workflow.inputs
    hook = loaded.workflow.on.webhook
    nested = isinstance(body, dict) and isinstance(body.get("inputs"), dict)
    if isinstance(body, dict) and hook.extra_inputs == "reject":
        allowed = RESERVED | ({"files"} if is_multipart() else set()) | ({"inputs"} if nested else set(declared))
        unknown = [k for k in body if k not in allowed]
        if unknown:
            _reject(loaded, unknown, nested)
    if nested:
        return {**dict(body["inputs"]), **uploads(declared)}
    inputs = {k: v for k, v in query.items() if k in declared}
    if isinstance(body, dict):
        inputs.update({k: v for k, v in body.items() if k in declared})
    inputs.update(uploads(declared))
    return inputs


def _reject(loaded, unknown: list[str], nested: bool):
    declared = sorted(loaded.workflow.inputs)
    names = []
    for key in unknown[:10]:
        hint = "" if nested else did_you_mean(str(key), declared)
        shown = str(key) if len(str(key)) <= 60 else str(key)[:57] + "..."
        names.append(f"'{shown}'" + (f" ({hint})" if hint else ""))
    where = "next to 'inputs'" if nested else "in the body"
    accepted_keys = ", ".join(declared) or "no inputs"
    problems = [f"unknown key {n} {where}" for n in names]
    raise ApiError(400, "invalid_inputs",
                   f"workflow '{loaded.name}' does not take {', '.join(names)}; it accepts: {accepted_keys} "
                   "(and callback_url). Send only those keys, or set 'extra_inputs: ignore' under the "
                   "workflow's on.webhook to let callers send extra fields (they stay in trigger.body).",
                   problems)


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
    callback = callback_url(body, query)
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in dropped}
    stored = for_trigger(loaded.workflow.inputs, body) if isinstance(body, dict) else body  # no data: URLs
    # the stored trigger holds the callback URL with its signature (n8n's resumeUrl) redacted
    trigger = redact_value({"kind": "webhook", "path": subpath, "method": request.method, "params": params,
                            "query": query, "headers": headers, "body": stored})
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
        return accepted(run_id, loaded.name, base)
    if hook.respond == "immediately":
        svc.queue.enqueue(run_id)
        return accepted(run_id, loaded.name, base)
    waiter = svc.waiter(run_id)
    svc.queue.enqueue(run_id)
    if not waiter.wait(hook.respond_timeout):
        svc.drop_waiter(run_id)
    run = svc.runtime.store.get_run(run_id)
    if run is None:  # deleted through the API while we waited
        raise ApiError(410, "run_deleted", f"run {run_id} was deleted before it could be reported")
    if run["status"] in ("queued", "running"):  # respond_timeout passed, or the service is stopping
        return still_running(run_id, loaded.name, base, run["status"], hook.respond_timeout)
    return final_reply(svc, run, base)


def still_running(run_id: str, workflow: str, base: str, actual: str, timeout: float):
    """202 ``status: running`` with the status URL: never a reply n8n could take for the result."""
    resp = accepted(run_id, workflow, base, status="running")
    body = resp.get_json()
    body.update(run_status=actual, message=(
        f"the run is still {actual} after respond_timeout ({timeout:g} s); poll status_url until status is "
        "succeeded or failed, or send callback_url to be called back"))
    return json_response(body, 202, {"Location": body["status_url"], "Retry-After": "5"})


def final_reply(svc, run: dict, base: str):
    """A finished run: the image bytes (``Accept: image/png``), else the result body, with base64 artifact
    data on ``?inline=base64``; a run that did not succeed gets its error code and the same body."""
    artifacts = svc.runtime.store.artifacts
    if run["status"] == "succeeded" and wants_image():
        return image_reply(run.get("outputs") or {}, artifacts, run["id"])
    result = svc.result_body(run, base)
    if wants_base64():
        result["outputs"] = add_base64(result["outputs"], artifacts, svc.config.max_body)
    if run["status"] == "succeeded":
        return json_response(result, 200)
    result["message"] = result["error"]["message"]
    return json_response(result, FAILED_CODE.get(run["status"], 500))


def init_app(app) -> None:
    app.register_blueprint(bp)
