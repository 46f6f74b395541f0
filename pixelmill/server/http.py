"""HTTP plumbing shared by the blueprints: JSON errors (never a traceback), body and query parsing with the
pydantic models, and the route table the OpenAPI document is generated from."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str, details=None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.details = details
        self.headers = headers or {}


def json_response(body, status: int = 200, headers: dict | None = None) -> Response:
    if isinstance(body, BaseModel):
        text = body.model_dump_json()
    else:
        text = json.dumps(body, default=str, separators=(",", ":"))
    return Response(text, status=status, headers=headers, mimetype="application/json")


def error_response(status: int, error: str, message: str, details=None, headers: dict | None = None) -> Response:
    body = {"error": error, "message": message}
    if details is not None:
        body["details"] = details
    return json_response(body, status, headers)


def _problems(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        out.append(f"{where}: {err['msg']}")
    return out


MAX_DEPTH = 100  # nesting of arrays and objects in a JSON body


class _NotFinite(ValueError):
    pass


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NotFinite(f"the number {text[:40]} is too large (larger than a 64-bit float)")
    return value


def _constant(name: str):
    raise _NotFinite(f"{name} is not a JSON number; send a finite number")


def _too_deep(value, limit: int = MAX_DEPTH) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return False


def read_json(required: bool = True):
    """The request's JSON body (None when empty and not required); 400 naming the problem when it is not
    JSON, holds a non-finite number (``NaN``, ``Infinity``, ``1e400``) or nests deeper than ``MAX_DEPTH``."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise ApiError(400, "invalid_json", "the request body is empty; send a JSON object")
        return None
    try:
        value = json.loads(raw, parse_float=_finite, parse_constant=_constant)
    except _NotFinite as exc:
        raise ApiError(400, "invalid_json", f"the request body has an invalid number: {exc}") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", f"the request body nests arrays or objects deeper than {MAX_DEPTH} "
                                            "levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from None
    if _too_deep(value):
        raise ApiError(400, "invalid_json", f"the request body nests arrays or objects deeper than {MAX_DEPTH} "
                                            "levels")
    return value


def parse_body(model: type[BaseModel], required: bool = True):
    """Validate the JSON body with ``model``; an empty body counts as ``{}`` when not required (JSON
    ``null`` or any other non-object is a 400)."""
    raw = request.get_data(cache=True)
    data = read_json(required) if (required or raw.strip()) else {}
    if not isinstance(data, dict):
        kind = "null" if data is None else type(data).__name__
        raise ApiError(400, "invalid_body", f"the request body must be a JSON object, not {kind}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, "invalid_body", "the request body is invalid: " + "; ".join(_problems(exc)),
                       _problems(exc)) from None


def parse_query(model: type[BaseModel]):
    data = {k: v for k, v in request.args.items()}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, "invalid_query", "invalid query parameters: " + "; ".join(_problems(exc)),
                       _problems(exc)) from None


# -- the route table --------------------------------------------------------------------------------


@dataclass
class RouteSpec:
    rule: str
    method: str
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    responses: dict[int, type[BaseModel] | str | None] = field(default_factory=dict)
    auth: bool = True
    operation_id: str = ""
    # a route under ``<workflow>`` whose body depends on the workflow: (served workflow) -> (JSON Schemas of
    # the body fields that differ, field names it adds to ``required``); the OpenAPI document then has one
    # such path per served workflow
    per_workflow: Callable[[Any], tuple[dict, list[str]]] | None = None


SPEC_ATTR = "pixelmill_route"


def endpoint(bp, rule: str, method: str, *, summary: str, tag: str, body=None, body_required: bool = True,
             query=None, responses=None, auth: bool = True, per_workflow=None):
    """Register a view on a blueprint and describe it for the OpenAPI document (the description travels
    on the view function; the document is built from the app's own URL map)."""

    def deco(fn):
        prefix = bp.url_prefix or ""
        setattr(fn, SPEC_ATTR, RouteSpec(prefix + rule, method, summary, tag, body, body_required, query,
                                         dict(responses or {200: None}), auth, fn.__name__, per_workflow))
        bp.add_url_rule(rule, endpoint=fn.__name__, view_func=fn, methods=[method])
        return fn

    return deco


def route_specs(app: Flask) -> list[RouteSpec]:
    """Every documented route of ``app``, in registration order."""
    out, seen = [], set()
    for rule in app.url_map.iter_rules():
        spec = getattr(app.view_functions.get(rule.endpoint), SPEC_ATTR, None)
        if spec is not None and id(spec) not in seen:
            seen.add(id(spec))
            out.append(spec)
    return out


# -- shared replies ----------------------------------------------------------------------------------


# an http(s) URL: host, optional port, path and query of RFC 3986 characters (n8n's $execution.resumeUrl
# has this form). Plain ASCII classes, so every regex dialect (JSON Schema's included) reads it the same.
_PCHAR = r"A-Za-z0-9._~!$&'()*+,;=:@%/-"
CALLBACK_PATTERN = re.compile(rf"^https?://[A-Za-z0-9-]{{1,63}}(\.[A-Za-z0-9-]{{1,63}})*(:[0-9]{{1,5}})?(/[{_PCHAR}]*)?"
                              rf"(\?[?{_PCHAR}]*)?$")


def accepted(run_id: str, workflow: str, base: str, status: str = "queued", code: int = 202) -> Response:
    return json_response({
        "run_id": run_id, "workflow": workflow, "status": status,
        "status_url": f"{base}/api/v1/runs/{run_id}", "events_url": f"{base}/api/v1/runs/{run_id}/events",
        "message": "Workflow got started",
    }, code)


def callback_url(body, query: dict) -> str | None:
    """The ``callback_url`` of a trigger (body first, then query); 400 unless it is an http(s) URL."""
    url = body.get("callback_url") if isinstance(body, dict) else None
    if url is None:
        url = query.get("callback_url")
    if url is None:
        return None
    # fullmatch: '$' then means the end of the text, as in JSON Schema (ECMA 262) patterns
    if not isinstance(url, str) or len(url) > 2000 or not CALLBACK_PATTERN.fullmatch(url):
        raise ApiError(400, "invalid_callback_url", f"callback_url must be an http(s) URL, not {str(url)[:200]!r}")
    return url


# -- errors as JSON ----------------------------------------------------------------------------------


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.error, exc.message, exc.details, exc.headers)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc):
        limit = app.config.get("MAX_CONTENT_LENGTH")
        return error_response(413, "payload_too_large",
                              f"the request body is larger than the limit of {limit} bytes (PIXELMILL_MAX_BODY)")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        names = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
        headers = {}
        if exc.code == 405:
            allowed = getattr(exc, "valid_methods", None)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
        message = exc.description or exc.name
        if exc.code == 404:
            message = f"nothing at {request.path}; see /api/v1/openapi.json for the API"
        return error_response(exc.code or 500, names.get(exc.code, (exc.name or "error").lower().replace(" ", "_")),
                              message, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error",
                              f"the server failed on {request.method} {request.path}: {type(exc).__name__}; "
                              "see the server log")
