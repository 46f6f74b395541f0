"""The workflow's structure beyond its shape: steps, inputs, node types, configs and literal inputs.

The whole file's shape (unknown or mistyped keys at any level) is checked against ``model.Workflow`` in
``load.py``; here each step that has a valid shape is checked on its own: its id is unique, its node type
is installed (at the version it asks for), its ``config`` fits the node's ``Config`` model, its literal
``with`` inputs fit the node's ``Inputs`` model (inputs with expressions are checked after rendering, at
run time), secrets named by ``*_secret`` config fields are set, and the node's own ``check_step`` hook
has its say. Workflow inputs' defaults and enum values must be of their declared type.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import BaseModel, ValidationError

from .. import expressions as ex
from ..model import InputSpec, Step, value_fits
from ..node import StepCheck, resolve_paths
from ..problems import did_you_mean, shorten
from ..pydantic_problems import problems_from
from ..registry import NodeInfo
from .check import Check

log = logging.getLogger("pixelmill.loader")


def parse_steps(raw) -> list[tuple[int, Step]]:
    """Steps that have a valid shape (their shape errors are reported by the whole-file check)."""
    if not isinstance(raw, list):
        return []
    out = []
    for i, item in enumerate(raw):
        try:
            out.append((i, Step.model_validate(item)))
        except ValidationError:
            continue
    return out


def index_steps(check: Check, raw_steps: list) -> dict[str, int]:
    """Every step id written in the file (valid step or not) -> its position; a duplicate id is an error."""
    step_index: dict[str, int] = {}
    for i, raw in enumerate(raw_steps):
        sid = raw.get("id") if isinstance(raw, dict) else None
        if not isinstance(sid, str):
            continue
        if sid in step_index:
            first = check.located.where(("steps", step_index[sid], "id"))[0]
            check.add(("steps", i, "id"), f"duplicate step id '{sid}' (first defined on line {first})",
                      "each step needs its own id")
        else:
            step_index[sid] = i
    return step_index


def check_steps(check: Check, steps, workflow_dir: Path) -> tuple[dict[str, NodeInfo], dict[str, BaseModel]]:
    """Each step's node, config and literal inputs: the node type and validated config of every step."""
    nodes: dict[str, NodeInfo] = {}
    configs: dict[str, BaseModel] = {}
    for i, step in steps:
        info = _check_node(check, i, step)
        if info is None:
            continue
        nodes.setdefault(step.id, info)
        config = _check_config(check, i, step, info)
        if config is not None:
            config = resolve_paths(config, workflow_dir)
            configs.setdefault(step.id, config)
            _node_check(check, i, step, info, config, workflow_dir)
        _check_inputs(check, i, step, info)
    return nodes, configs


def _check_node(check: Check, i: int, step: Step) -> NodeInfo | None:
    info = check.registry.get(step.node_type)
    if info is None:
        hint = did_you_mean(step.node_type, check.registry.types()) or "run 'pixelmill nodes' to list node types"
        check.add(("steps", i, "node"), f"step '{step.id}': unknown node '{step.node_type}'", hint)
        return None
    if step.node_version is not None and step.node_version != info.version:
        check.add(("steps", i, "node"),
                  f"step '{step.id}': node '{info.type}' is version {info.version}, the step asks for {step.node_version}",
                  f"use '{info.type}@{info.version}' or install the version you need")
        return None
    return info


def _check_config(check: Check, i: int, step: Step, info: NodeInfo):
    try:
        return info.cls.Config.model_validate(step.config)
    except ValidationError as exc:
        label = f"step '{step.id}' ({info.type}) config"
        check.problems.extend(problems_from(exc, check.located, ("steps", i, "config"), info.cls.Config, label))
        return None


def _check_inputs(check: Check, i: int, step: Step, info: NodeInfo) -> None:
    model = info.cls.Inputs
    expr_fields = {k for k, v in step.with_.items() if _has_expr(v)}
    literal = {k: v for k, v in step.with_.items() if k not in expr_fields}
    try:
        model.model_validate(literal)
    except ValidationError as exc:
        kept = []
        for err in exc.errors():
            head = err["loc"][0] if err["loc"] else None
            if head in expr_fields:
                continue  # checked after rendering, at run time
            kept.append(err)
        if kept:
            label = f"step '{step.id}' ({info.type}) input"
            check.problems.extend(
                problems_from(ValidationError.from_exception_data(exc.title, kept), check.located,
                              ("steps", i, "with"), model, label, missing_at=("steps", i))
            )


def _has_expr(value) -> bool:
    return any(ex.OPEN in s for _, s in ex.walk_strings(value))


def check_input_specs(check: Check, inputs) -> None:
    """Defaults and enum values of the right type; a default inside its enum (a null default means none)."""
    if not isinstance(inputs, dict):
        return
    for name, raw in inputs.items():
        try:
            spec = InputSpec.model_validate(raw)
        except ValidationError:
            continue  # reported by the whole-file check
        for k, option in enumerate(spec.enum or []):
            if not value_fits(spec.type, option):
                check.add(("inputs", name, "enum", k), f"input '{name}': enum value {shorten(option)!s} is not "
                          f"of type {spec.type}")
        if spec.default is None:
            continue
        if not value_fits(spec.type, spec.default):
            check.add(("inputs", name, "default"), f"input '{name}': default {shorten(repr(spec.default))} is not "
                      f"of type {spec.type}", "quote strings; write numbers without quotes")
        elif spec.enum is not None and spec.default not in spec.enum:
            check.add(("inputs", name, "default"), f"input '{name}': default {shorten(repr(spec.default))} is not "
                      f"one of its enum values", "allowed: " + shorten(", ".join(map(repr, spec.enum)), 200))


def _node_check(check: Check, i: int, step: Step, info: NodeInfo, config: BaseModel, workflow_dir: Path) -> None:
    """Secrets named by config fields (``*_secret``), then the node's own ``check_step`` hook."""
    for path, name in _secret_fields(config.model_dump(), ("config",)):
        check.secret(("steps", i) + path, name)
    hook = StepCheck(step.id, config, dict(step.with_), workflow_dir, check.environ)
    try:
        info.cls.check_step(hook)
    except Exception as exc:  # noqa: BLE001 - a third-party hook's bug is a warning, not a crash
        log.exception("node %s: check_step failed", info.type)
        check.warn(("steps", i, "node"), f"step '{step.id}': node '{info.type}' could not check this step: "
                                         f"{shorten(exc)}")
        return
    for level, path, message, hint in hook.issues:
        full = ("steps", i) + tuple(path)
        (check.add if level == "error" else check.warn)(full, f"step '{step.id}': {message}", hint)


def _secret_fields(value, path):
    """``(path, name)`` of config fields that name a secret: by convention their key ends in ``_secret``."""
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and k.endswith("_secret") and isinstance(v, str):
                yield path + (k,), v
            else:
                yield from _secret_fields(v, path + (k,))
    elif isinstance(value, list):
        for n, v in enumerate(value):
            yield from _secret_fields(v, path + (n,))
