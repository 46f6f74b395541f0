"""The OpenAPI 3.1 document at ``/api/v1/openapi.json``, generated from the route table and the same
pydantic models that validate requests and shape responses."""

from __future__ import annotations

import re

from pydantic.json_schema import models_json_schema

from .. import __version__
from . import schemas as s
from .api import bp
from .http import ROUTES, json_response

_PARAM = re.compile(r"<(?:[a-z]+:)?([A-Za-z_]+)>")


def _models():
    seen = {s.ErrorOut}
    for r in ROUTES:
        for m in [r.body, r.query, *r.responses.values()]:
            if isinstance(m, type):
                seen.add(m)
    return sorted(seen, key=lambda m: m.__name__)


def build_document() -> dict:
    models = _models()
    keys, defs = models_json_schema([(m, "validation") for m in models],
                                    ref_template="#/components/schemas/{model}")
    schemas = dict(defs.get("$defs", {}))
    ref = {m: keys[(m, "validation")] for m in models}
    paths: dict = {}
    for r in ROUTES:
        path = _PARAM.sub(r"{\1}", r.rule)
        op = {"operationId": r.operation_id, "summary": r.summary, "tags": [r.tag], "responses": {}}
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
                  for n in _PARAM.findall(r.rule)]
        if r.query is not None:
            qs = r.query.model_json_schema()
            for name, sub in qs.get("properties", {}).items():
                params.append({"name": name, "in": "query", "required": name in qs.get("required", []),
                               "schema": sub})
        if r.operation_id == "run_events":
            params.append({"name": "Last-Event-ID", "in": "header", "required": False,
                           "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}})
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {"required": r.body_required,
                                 "content": {"application/json": {"schema": ref[r.body]}}}
        for code, model in r.responses.items():
            if model is None:
                op["responses"][str(code)] = {"description": "no content" if code == 204 else "OK"}
            elif isinstance(model, str):
                op["responses"][str(code)] = {"description": "OK", "content": {model: {"schema": {}}}}
            else:
                op["responses"][str(code)] = {"description": model.__doc__ or model.__name__,
                                              "content": {"application/json": {"schema": ref[model]}}}
        if r.auth:
            op["security"] = [{"bearer": []}]
            op["responses"].setdefault("401", {"description": "missing or wrong bearer token",
                                               "content": {"application/json": {"schema": ref[s.ErrorOut]}}})
        paths.setdefault(path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "pixelmill", "version": __version__,
                 "description": "Run YAML image workflows: trigger, watch and inspect runs. Webhooks live under "
                                "/webhook/<path> (see each workflow's 'on.webhook')."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "PIXELMILL_API_TOKEN, when it is set"}}},
    }


_CACHE: dict = {}


@bp.get("/openapi.json")
def openapi():
    if "doc" not in _CACHE:
        _CACHE["doc"] = build_document()
    return json_response(_CACHE["doc"])
