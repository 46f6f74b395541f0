"""Structured output: parse a model's answer as JSON, validate it against a JSON Schema, and say what is wrong."""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```\s*$", re.S)


def check_schema(schema: dict) -> None:
    """Raise ``ValueError`` when ``schema`` is not a valid JSON Schema (checked at workflow load)."""
    from jsonschema import validators
    from jsonschema.exceptions import SchemaError

    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"not a valid JSON Schema: {exc.message}") from None


def parse_and_validate(text: str, schema: dict) -> tuple[Any, str | None]:
    """-> (value, None) when ``text`` is JSON meeting ``schema``; else (None, a short reason for the model)."""
    from jsonschema import validators

    body = text.strip()
    fenced = _FENCE.match(body)  # many models wrap JSON in a Markdown fence even when told not to
    if fenced:
        body = fenced.group(1).strip()
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        return None, f"the answer is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    validator = validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    if not errors:
        return value, None
    reasons = []
    for err in errors[:5]:
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        reasons.append(f"at {where}: {err.message}")
    return None, "the JSON does not match the schema: " + "; ".join(reasons)


def schema_instruction(schema: dict) -> str:
    """What the system message says when the server cannot enforce the schema itself."""
    return ("Answer with one JSON value only, no prose and no Markdown fence, that validates against this "
            "JSON Schema:\n" + json.dumps(schema, separators=(",", ":")))


def repair_message(reason: str) -> str:
    return f"That answer was rejected: {reason}. Reply again with only the corrected JSON."
