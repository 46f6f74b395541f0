"""Workflow inputs: defaults applied, values coerced to their declared types, all problems at once."""

from __future__ import annotations

import json

from .fileinputs import FileInputRefused, RunFiles, accept
from .model import InputSpec


class InputError(ValueError):
    """Bad run inputs; ``problems`` names each input and what is wrong."""

    def __init__(self, problems: list[str], status: int = 400):
        self.problems = problems
        self.status = status  # the HTTP status a server answers with (413 for a file over a limit)
        super().__init__("; ".join(problems))


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _coerce(name: str, spec: InputSpec, value):
    kind = spec.type
    if kind == "string":
        if isinstance(value, (dict, list)):
            raise ValueError(f"input '{name}' must be a string")
        return value if isinstance(value, str) else str(value)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ValueError(f"input '{name}' must be true or false, not {value!r}")
    if kind in ("integer", "number"):
        if isinstance(value, bool):
            raise ValueError(f"input '{name}' must be a {kind}, not {value!r}")
        try:
            number = float(value) if kind == "number" else int(value if not isinstance(value, str) else value.strip())
        except (TypeError, ValueError):
            raise ValueError(f"input '{name}' must be a{'n' if kind == 'integer' else ''} {kind}, not {value!r}") from None
        if kind == "integer" and isinstance(value, float) and value != int(value):
            raise ValueError(f"input '{name}' must be a whole number, not {value!r}")
        return number
    # list / object: accept the value itself or JSON text
    want = list if kind == "list" else dict
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(f"input '{name}' must be a {kind} (JSON), not {value!r}") from None
    if not isinstance(value, want):
        raise ValueError(f"input '{name}' must be a {kind}")
    return value


def resolve_inputs(specs: dict[str, InputSpec], given: dict | None, files: RunFiles | None = None) -> dict:
    """Checked inputs with defaults; ``image``/``file`` inputs are stored through ``files`` (the run's folder)."""
    given = dict(given or {})
    problems, out, status = [], {}, 400
    for name in given:
        if name not in specs:
            known = ", ".join(sorted(specs)) or "none"
            problems.append(f"unknown input '{name}' (this workflow takes: {known})")
    for name, spec in specs.items():
        if spec.type in ("image", "file") and (name in given or spec.default is not None):
            if files is None:
                problems.append(f"input '{name}' is a {spec.type}: it can only be given to a run being created")
                continue
            try:
                out[name] = accept(name, spec.type, given.get(name, spec.default), files)
            except FileInputRefused as exc:
                problems.append(str(exc))
                status = max(status, exc.status)
            continue
        if name in given:
            try:
                value = _coerce(name, spec, given[name])
            except ValueError as exc:
                problems.append(str(exc))
                continue
        elif spec.required:
            problems.append(f"missing required input '{name}'")
            continue
        else:
            value = spec.default
        if spec.enum is not None and value not in spec.enum:
            problems.append(f"input '{name}' must be one of {spec.enum}, not {value!r}")
            continue
        out[name] = value
    if problems:
        if files is not None:
            files.discard()
        raise InputError(problems, status)
    return out
