"""Turn pydantic validation errors into ``file:line:col`` problems with readable messages."""

from __future__ import annotations

import types
import typing

from pydantic import BaseModel, ValidationError

from .problems import Problem, did_you_mean, shorten
from .yamlsource import Located


def _data_at(data, path):
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None, False
    return data, True


def _split_loc(data, loc: tuple) -> tuple[tuple, tuple]:
    """The part of pydantic's ``loc`` that indexes real data, and what is left (union tags, missing keys)."""
    path = ()
    for i, part in enumerate(loc):
        here, _ = _data_at(data, path)
        if part == 0 and isinstance(here, dict):
            continue  # a single item the model wraps into a list (``schedule: {...}``)
        _, ok = _data_at(data, path + (part,))
        if not ok:
            return path, loc[i:]
        path += (part,)
    return path, ()


def _unwrap(tp):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(tp) if a is not type(None)]
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    return [tp]


def _descend(tp, part):
    for cand in _unwrap(tp):
        origin = typing.get_origin(cand)
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            for name, f in cand.model_fields.items():
                if part in (name, f.alias):
                    return f.annotation
        elif origin in (list, tuple) and isinstance(part, int):
            return (typing.get_args(cand) or (typing.Any,))[0]
        elif origin is dict and isinstance(part, str):
            args = typing.get_args(cand)
            return args[1] if len(args) == 2 else typing.Any
    return None


def allowed_keys(model_cls, rel_path: tuple) -> list[str]:
    tp = model_cls
    for part in rel_path:
        tp = _descend(tp, part)
        if tp is None:
            return []
    for cand in _unwrap(tp):
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            return [f.alias or name for name, f in cand.model_fields.items()]
    return []


def _dotted(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def problems_from(
    exc: ValidationError,
    located: Located,
    base: tuple,
    model_cls: type[BaseModel],
    label: str,
    missing_at: tuple | None = None,
) -> list[Problem]:
    data, _ = _data_at(located.data, base)
    problems: list[Problem] = []
    seen: set = set()
    for err in exc.errors():
        loc = tuple(err["loc"])
        rel, rest = _split_loc(data, loc)
        etype = err["type"]
        this_label, shown = label, rel
        if not base and len(rel) >= 2 and rel[0] == "steps":
            step_id, ok = _data_at(data, ("steps", rel[1], "id"))
            if ok and isinstance(step_id, str):
                this_label, shown = f"step '{step_id}'", rel[2:]
        if etype == "extra_forbidden":
            key = loc[-1]
            hint = did_you_mean(str(key), allowed_keys(model_cls, loc[:-1]))
            keys = allowed_keys(model_cls, loc[:-1])
            if not hint and keys:
                hint = "allowed: " + ", ".join(keys)
            parent = _dotted(shown[:-1]) if shown else ""
            where_text = f" in '{parent}'" if parent else ""
            problem = located.problem(base + loc, f"{this_label}: unknown key '{key}'{where_text}", hint, key=True)
        elif etype == "missing" and rest:
            key = rest[0]
            where = missing_at if missing_at is not None else base + rel
            noun = "input" if label.endswith(" input") else "key"
            scope = f"{this_label.removesuffix(' input')}: missing required {noun} '{key}'"
            if rel and shown:
                scope = f"{this_label}: '{_dotted(shown)}' is missing required key '{key}'"
            problem = located.problem(where, scope)
        else:
            what = f"'{_dotted(shown)}' " if shown else ""
            problem = located.problem(base + rel, f"{this_label}: {what}{_message(err)}")
        # a union reports one error per member; one problem per place is enough
        key_ = (problem.line, problem.col) if etype not in ("extra_forbidden", "missing") else problem

        if key_ in seen:
            continue
        seen.add(key_)
        problems.append(problem)
    return problems


def _message(err: dict) -> str:
    msg = err["msg"]
    if msg.startswith("Input should"):
        msg = "must" + msg[len("Input should"):]
    msg = msg[0].lower() + msg[1:] if msg else msg
    if "input" in err and not isinstance(err["input"], (dict, list)):
        msg += f" (got {shorten(repr(err['input']))})"
    if err["type"] == "string_type" and isinstance(err.get("input"), bool):
        msg += "; YAML reads yes/no/on/off/true/false as booleans: quote the value"
    return msg
