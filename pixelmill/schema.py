"""JSON Schema for workflow files, generated from the same pydantic models the loader uses.

Steps become a union discriminated by ``node``: one variant per registered node
type, each with that node's config and inputs, so editors autocomplete both.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter, create_model

from .model import Step, Workflow
from .registry import Registry

EXPRESSION = {"type": "string", "pattern": r"\$\{\{.*\}\}", "description": "a ${{ }} expression"}


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
    if infos:
        variants = [_step_variant(i) for i in infos]
        step_type = Annotated[Union[tuple(variants)], Field(discriminator="node")] if len(variants) > 1 else variants[0]
        model = create_model("Workflow", __base__=Workflow, steps=(list[step_type], Field(min_length=1)))
    else:
        model = Workflow
    schema = TypeAdapter(model).json_schema(by_alias=True)
    defs = schema.get("$defs", {})
    for info in infos:
        variant = defs.get(f"Step_{info.type}")
        if variant is None:
            continue
        inputs_schema = info.cls.Inputs.model_json_schema(by_alias=True)
        for name, sub in inputs_schema.pop("$defs", {}).items():
            defs.setdefault(name, sub)
        for prop, sub in list(inputs_schema.get("properties", {}).items()):
            inputs_schema["properties"][prop] = {"anyOf": [copy.deepcopy(sub), EXPRESSION], **_title(sub)}
        variant["properties"]["with"] = inputs_schema
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "pixelmill workflow"
    return schema


def _title(sub: dict) -> dict:
    return {k: sub[k] for k in ("title", "description") if k in sub}
