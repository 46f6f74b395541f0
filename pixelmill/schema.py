"""JSON Schema for workflow files, generated from the same pydantic models the loader uses.

Each step is checked against its node's variant (that node's config and inputs), selected by ``node``
with ``if``/``then``, so an editor or any JSON-Schema validator reports a typo'd key at that key instead
of "not valid under any of the given schemas". A step of a node type this registry does not know gets
the generic step shape. Every input, and every value inside an input, may also be a ``${{ }}``
expression.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import Field, TypeAdapter, create_model

from .model import Step, Workflow
from .registry import Registry

EXPRESSION = {"type": "string", "pattern": r"\$\{\{.*\}\}", "description": "a ${{ }} expression"}
_INPUT_SUFFIX = "_input"  # input-side copies of shared definitions (they also accept expressions)


def _step_variant(info):
    names = (info.type, f"{info.type}@{info.version}")
    return create_model(
        f"Step_{info.type}",
        __base__=Step,
        __doc__=(info.cls.__doc__ or "").strip(),
        node=(Literal[names], Field(description=f"{info.type} v{info.version}")),
        config=(info.cls.Config, Field(default_factory=info.cls.Config) if _all_optional(info.cls.Config) else ...),
        with_=(dict[str, Any], Field(default_factory=dict, alias="with", json_schema_extra={"x-inputs": info.type})),
    )


def _all_optional(model) -> bool:
    return all(not f.is_required() for f in model.model_fields.values())


def workflow_schema(registry: Registry) -> dict:
    infos = list(registry)
    fields: dict = {}
    for info in infos:
        fields[info.type] = (_step_variant(info) | None, None)
    holder = create_model("Variants", **{f"v{k}": v for k, v in enumerate(fields.values())}, generic=(Step, None))
    variants = TypeAdapter(holder).json_schema(by_alias=True)
    schema = TypeAdapter(Workflow).json_schema(by_alias=True)
    defs = schema.setdefault("$defs", {})
    defs.update(variants.get("$defs", {}))
    for info in infos:
        variant = defs[f"Step_{info.type}"]
        inputs_schema = info.cls.Inputs.model_json_schema(by_alias=True)
        for name, sub in inputs_schema.pop("$defs", {}).items():
            defs.setdefault(name + _INPUT_SUFFIX, _inner(sub))
        variant["properties"]["with"] = _inner(inputs_schema)
    names = [n for info in infos for n in (info.type, f"{info.type}@{info.version}")]
    schema["properties"]["steps"]["items"] = _step_items(infos, names)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "pixelmill workflow"
    return schema


def _step_items(infos, names: list[str]) -> dict:
    """A step: the variant of its node, chosen by ``node`` (if/then), or the generic shape for other nodes."""
    branches = [{"if": {"properties": {"node": {"enum": [info.type, f"{info.type}@{info.version}"]}},
                        "required": ["node"]},
                 "then": {"$ref": f"#/$defs/Step_{info.type}"}} for info in infos]
    branches.append({"if": {"properties": {"node": {"not": {"enum": names}}}, "required": ["node"]},
                     "then": {"$ref": "#/$defs/Step"}})
    return {
        "type": "object",
        "required": ["id", "node"],
        "properties": {"node": {"anyOf": [{"enum": names}, {"type": "string"}],
                                "description": "node type, optionally @version ('pixelmill nodes' lists them)"}},
        "allOf": branches,
    }


def _ref(ref: str) -> str:
    return ref + _INPUT_SUFFIX if ref.startswith("#/$defs/") else ref


def _inner(sub):
    """A copy of an input schema whose every nested value may also be an expression."""
    if not isinstance(sub, dict):
        return sub
    out = copy.copy(sub)
    if "$ref" in out:
        out["$ref"] = _ref(out["$ref"])
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _wrap(v) for k, v in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = _wrap(out["items"])
    if isinstance(out.get("prefixItems"), list):
        out["prefixItems"] = [_wrap(v) for v in out["prefixItems"]]
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _wrap(out["additionalProperties"])
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(out.get(key), list):
            out[key] = [_inner(v) for v in out[key]]
    return out


def _wrap(sub) -> dict:
    if not isinstance(sub, dict) or not sub:
        return sub  # true / {} accept anything already
    return {"anyOf": [_inner(sub), EXPRESSION], **_title(sub)}


def _title(sub: dict) -> dict:
    return {k: sub[k] for k in ("title", "description") if k in sub}
