"""The OpenAPI 3.1 document at ``/api/v1/openapi.json``, generated from the app's URL map, the pydantic
models that validate requests and shape responses, and the served workflows (each one gets its own
``POST /workflows/<name>/runs`` with its exact inputs, and its own calendar paths whose bodies hold
inputs). It describes the server as configured: the bearer scheme appears only when
``PIXELMILL_API_TOKEN`` is set."""

from __future__ import annotations

import re

from flask import Blueprint, current_app
from pydantic.json_schema import models_json_schema

from .. import __version__
from . import schemas as s
from .context import current_service
from .http import CALLBACK_PATTERN, json_response, route_specs
from .typed_inputs import input_schema

bp = Blueprint("openapi", __name__, url_prefix="/api/v1")
CACHE = "pixelmill.openapi"
_PARAM = re.compile(r"<(?:[a-z]+:)?([A-Za-z_]+)>")
CALLBACK_URL = {"type": ["string", "null"], "pattern": CALLBACK_PATTERN.pattern, "maxLength": 2000, "description": "POST the result here when the run ends"}


def _models(routes):
    seen = {s.ErrorOut}
    for r in routes:
        for m in [r.body, r.query, *r.responses.values()]:
            if isinstance(m, type):
                seen.add(m)
    return sorted(seen, key=lambda m: m.__name__)


def _error(ref: dict, text: str) -> dict:
    return {"description": text, "content": {"application/json": {"schema": ref}}}


def _responses(r, ref: dict, secured: bool) -> dict:
    out = {}
    for code, model in r.responses.items():
        if model is None:
            out[str(code)] = {"description": "no content" if code == 204 else "OK"}
        elif isinstance(model, str | tuple):
            types = (model,) if isinstance(model, str) else model
            out[str(code)] = {"description": "OK", "content": {t: {"schema": {}} for t in types}}
        else:
            out[str(code)] = {"description": model.__doc__ or model.__name__,
                              "content": {"application/json": {"schema": ref[model]}}}
    if r.body is not None or r.query is not None:
        out.setdefault("400", _error(ref[s.ErrorOut], "invalid body or query"))
    if secured:
        out.setdefault("401", _error(ref[s.ErrorOut], "missing or wrong bearer token"))
    return out


def _workflow_paths(svc, trigger, ref: dict, secured: bool) -> dict:
    """One ``POST /api/v1/workflows/<name>/runs`` per served workflow, with its inputs as they are checked."""
    paths = {}
    for loaded in svc.workflows.all():
        if loaded.name == "validate":
            continue  # shadowed by /workflows/validate
        inputs = input_schema(loaded.workflow.inputs)
        body = {"type": "object", "additionalProperties": False,
                "properties": {"inputs": inputs, "callback_url": CALLBACK_URL}}
        if inputs.get("required"):
            body["required"] = ["inputs"]
        op = {"operationId": f"run_{re.sub(r'[^A-Za-z0-9_]', '_', loaded.name)}",
              "summary": f"Start a run of '{loaded.name}'" + (f": {loaded.workflow.description}"
                                                              if loaded.workflow.description else ""),
              "tags": ["workflows"],
              "requestBody": {"required": bool(inputs.get("required")),
                              "content": {"application/json": {"schema": body}}},
              "responses": _responses(trigger, ref, secured)}
        op["responses"].pop("404", None)
        if secured:
            op["security"] = [{"bearer": []}]
        paths[f"/api/v1/workflows/{loaded.name}/runs"] = {"post": op}
    return paths


def _per_workflow_paths(svc, r, ref: dict, secured: bool) -> dict:
    """A route under ``<workflow>`` documented once per served workflow: the body fields that depend on the
    workflow (``r.per_workflow``), the others as the body model declares them."""
    base = ref[r.body]["$ref"]
    required = r.body.model_json_schema().get("required", [])
    paths = {}
    for loaded in svc.workflows.all():
        fields, more_required = r.per_workflow(loaded)
        body = {"type": "object", "additionalProperties": False,
                "properties": {name: fields.get(name, {"$ref": f"{base}/properties/{name}"})
                               for name in r.body.model_fields}}
        if required or more_required:
            body["required"] = [*required, *more_required]
        op = {"operationId": f"{r.operation_id}_{re.sub(r'[^A-Za-z0-9_]', '_', loaded.name)}",
              "summary": f"{r.summary} ('{loaded.name}')", "tags": [r.tag],
              "requestBody": {"required": r.body_required or bool(more_required),
                              "content": {"application/json": {"schema": body}}},
              "responses": _responses(r, ref, secured and r.auth)}
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
                  for n in _PARAM.findall(r.rule) if n != "workflow"]
        if params:
            op["parameters"] = params
        if secured and r.auth:
            op["security"] = [{"bearer": []}]
        path = _PARAM.sub(r"{\1}", r.rule.replace("<workflow>", loaded.name))
        paths.setdefault(path, {})[r.method.lower()] = op
    return paths


def build_document(app, svc) -> dict:
    routes = route_specs(app)
    secured = bool(svc.config.api_token)
    models = _models(routes)
    keys, defs = models_json_schema([(m, "validation") for m in models], ref_template="#/components/schemas/{model}")
    ref = {m: keys[(m, "validation")] for m in models}
    paths: dict = {}
    trigger = None
    for r in routes:
        path = _PARAM.sub(r"{\1}", r.rule)
        op = {"operationId": r.operation_id, "summary": r.summary, "tags": [r.tag]}
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
                  for n in _PARAM.findall(r.rule)]
        if r.query is not None:
            qs = r.query.model_json_schema()
            for name, sub in qs.get("properties", {}).items():
                params.append({"name": name, "in": "query", "required": name in qs.get("required", []),
                               "schema": sub})
        if r.operation_id == "run_events":
            params.append({"name": "Last-Event-ID", "in": "header", "required": False,
                           "schema": s.LAST_EVENT_ID})
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {"required": r.body_required,
                                 "content": {"application/json": {"schema": ref[r.body]}}}
        op["responses"] = _responses(r, ref, secured and r.auth)
        if secured and r.auth:
            op["security"] = [{"bearer": []}]
        if r.operation_id == "trigger_workflow":
            trigger = r  # documented per served workflow below, with that workflow's exact inputs
            continue
        if r.per_workflow is not None:
            for p, ops in _per_workflow_paths(svc, r, ref, secured).items():
                paths.setdefault(p, {}).update(ops)
            continue
        paths.setdefault(path, {})[r.method.lower()] = op
    if trigger is not None:
        paths.update(_workflow_paths(svc, trigger, ref, secured))
    components: dict = {"schemas": dict(defs.get("$defs", {}))}
    if secured:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer",
                                                    "description": "the server's PIXELMILL_API_TOKEN"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "pixelmill", "version": __version__,
                 "description": "Run YAML image workflows: trigger, watch and inspect runs. Webhooks live under "
                                "/webhook/<path> (see each workflow's 'on.webhook')."},
        "paths": paths,
        "components": components,
    }


@bp.get("/openapi.json")
def openapi():
    svc = current_service()
    key = svc.workflows.catalog  # rebuilt when a reload swaps the served set
    cached = current_app.extensions.get(CACHE)
    if cached is None or cached[0] is not key:
        cached = (key, build_document(current_app, svc))
        current_app.extensions[CACHE] = cached
    return json_response(cached[1])


def init_app(app) -> None:
    app.register_blueprint(bp)
