"""A workflow's inputs as JSON Schema, and the same rules checked on JSON request bodies.

The API takes JSON, so an input's JSON type is known: the API accepts exactly what its OpenAPI document
declares per workflow (type, enum, required, no unknown keys). Webhooks keep the looser coercion of
``pixelmill.inputs`` because forms and query strings carry only text.
"""

from __future__ import annotations

import math

from ..model import InputSpec

INT_LIMIT = 2**53  # integers beyond this lose precision in JSON clients (JavaScript, n8n)
FLOAT_LIMIT = 1.7e308

_SCHEMA = {
    "string": {"type": "string"},
    "integer": {"type": "integer", "minimum": -INT_LIMIT, "maximum": INT_LIMIT},
    "number": {"type": "number", "minimum": -FLOAT_LIMIT, "maximum": FLOAT_LIMIT},
    "boolean": {"type": "boolean"},
    "list": {"type": "array"},
    "object": {"type": "object"},
    # in JSON an image or file is a data: URL or an http(s) URL; multipart file parts are the other way in
    "image": {"type": "string", "format": "uri"},
    "file": {"type": "string", "format": "uri"},
}


def input_schema(specs: dict[str, InputSpec]) -> dict:
    """JSON Schema of the ``inputs`` object of one workflow."""
    props = {}
    for name, spec in specs.items():
        sub = dict(_SCHEMA[spec.type])
        if spec.description:
            sub["description"] = spec.description
        if spec.enum is not None:
            sub["enum"] = list(spec.enum)
        if not spec.required:
            sub["default"] = spec.default
        props[name] = sub
    schema = {"type": "object", "properties": props, "additionalProperties": False}
    required = [n for n, spec in specs.items() if spec.required]
    if required:
        schema["required"] = required
    return schema


def _type_ok(kind: str, value) -> bool:
    if kind in ("string", "image", "file"):
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "integer":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return isinstance(value, int) and -INT_LIMIT <= value <= INT_LIMIT
    if kind == "number":
        return isinstance(value, int | float) and math.isfinite(value) and abs(value) <= FLOAT_LIMIT
    if kind == "list":
        return isinstance(value, list)
    return isinstance(value, dict)


_WORD = {"string": "a string", "integer": "a whole number within ±2^53", "number": "a finite number",
         "boolean": "true or false", "list": "a JSON array", "object": "a JSON object",
         "image": "a data: URL or an http(s) URL (or a multipart file part)",
         "file": "a data: URL or an http(s) URL (or a multipart file part)"}


def check_json_inputs(specs: dict[str, InputSpec], given: dict, partial: bool = False) -> list[str]:
    """Problems with ``given`` against the workflow's declared inputs (empty when it is fine); ``partial``:
    ``given`` changes some inputs of a whole set (required ones may be absent)."""
    problems = []
    accepted = ", ".join(sorted(specs)) or "none"
    for name, value in given.items():
        spec = specs.get(name)
        if spec is None:
            problems.append(f"unknown input '{name}' (this workflow takes: {accepted})")
        elif not _type_ok(spec.type, value):
            problems.append(f"input '{name}' must be {_WORD[spec.type]}, not {_short(value)}")
        elif spec.enum is not None and value not in spec.enum:
            problems.append(f"input '{name}' must be one of {spec.enum}, not {_short(value)}")
    for name, spec in specs.items():
        if spec.required and name not in given and not partial:
            problems.append(f"missing required input '{name}'")
    return problems


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
