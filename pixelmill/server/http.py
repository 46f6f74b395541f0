"""HTTP plumbing shared by the blueprints: JSON errors (never a traceback), body and query parsing with the
pydantic models, and the route table the OpenAPI document is generated from."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

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


def read_json(required: bool = True):
    """The request's JSON body; 400 with the parser's message when it is not JSON."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise ApiError(400, "invalid_json", "the request body is empty; send a JSON object")
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from None


def parse_body(model: type[BaseModel], required: bool = True):
    data = read_json(required)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", f"the request body must be a JSON object, not {type(data).__name__}")
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


ROUTES: list[RouteSpec] = []


def endpoint(bp, rule: str, method: str, *, summary: str, tag: str, body=None, body_required: bool = True,
             query=None, responses=None, auth: bool = True):
    """Register a view on a blueprint and describe it for the OpenAPI document."""

    def deco(fn):
        bp.add_url_rule(rule, endpoint=fn.__name__, view_func=fn, methods=[method])
        prefix = bp.url_prefix or ""
        ROUTES.append(RouteSpec(prefix + rule, method, summary, tag, body, body_required, query,
                                dict(responses or {200: None}), auth, fn.__name__))
        return fn

    return deco


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
