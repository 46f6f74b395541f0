"""Load one workflow file: read it, run every check, and return it validated or raise every problem.

Checks run in layers, each on whatever the previous layers could read, so one mistake does not hide the
next: YAML syntax and duplicate keys (``yamlsource``); the workflow's shape (unknown or mistyped keys at
any level, ``model.Workflow``); steps, node types, their config and literal inputs (``structure``);
expressions and ``needs`` (``references``); the dependency order and cycles (``order``); schedules,
webhook auth and calendar entries (``triggers``). Problems are collected in a ``Check`` (``check``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ValidationError

from ..calendar.entries import Calendar
from ..model import Workflow
from ..problems import Problem, WorkflowInvalid, shorten
from ..pydantic_problems import problems_from
from ..registry import NodeInfo, Registry
from ..yamlsource import Located, load
from .check import Check
from .order import dependency_order
from .references import check_references
from .structure import check_input_specs, check_steps, index_steps, parse_steps
from .triggers import check_calendar, check_triggers

log = logging.getLogger("pixelmill.loader")


@dataclass
class LoadedWorkflow:
    """A validated workflow, ready for the executor."""

    workflow: Workflow
    file: str
    nodes: dict[str, NodeInfo]  # step id -> node type
    configs: dict[str, BaseModel]  # step id -> validated config
    deps: dict[str, set[str]]  # step id -> step ids it waits for
    order: list[str]  # a dependency order (list order where free)
    source: str = ""
    located: Located | None = field(default=None, repr=False)  # where each key and value was read
    # step id -> the deps it only reads ``steps.X.status`` of: wait for them to finish, whatever the outcome
    status_deps: dict[str, set[str]] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)  # it loads, but something will likely fail at run time
    calendar: Calendar = field(default_factory=Calendar)  # dated entries (on.at, on.calendar)

    @property
    def name(self) -> str:
        return self.workflow.name


def load_text(text: str, file: str, registry: Registry, environ=None) -> LoadedWorkflow:
    """Validate a workflow's text; raise ``WorkflowInvalid`` with every error (never anything else).

    ``environ`` (default ``os.environ``) is only read to warn about secrets that are not set.
    """
    try:
        return _load_text(text, file, registry, os.environ if environ is None else environ)
    except WorkflowInvalid:
        raise
    except Exception as exc:  # a bug here must not take a server or a folder of workflows down
        log.exception("validating %s failed", file)
        raise WorkflowInvalid([Problem(file, 1, 1, f"internal error while validating this file: {shorten(exc)}",
                                       "please report this with the file")]) from None


def _load_text(text: str, file: str, registry: Registry, environ) -> LoadedWorkflow:
    located = load(text, file)
    check = Check(located, registry, list(located.problems), environ)
    data = located.data
    if located.data is None:
        raise WorkflowInvalid(check.problems)
    if not isinstance(data, dict):
        check.add((), "a workflow file must be a mapping with 'name' and 'steps'")
        raise WorkflowInvalid(check.problems)

    workflow = None
    try:
        workflow = Workflow.model_validate(data)
    except ValidationError as exc:
        check.problems.extend(problems_from(exc, located, (), Workflow, "workflow"))

    steps = parse_steps(data.get("steps"))
    raw_steps = data.get("steps") if isinstance(data.get("steps"), list) else []
    step_index = index_steps(check, raw_steps)  # every step id written in the file, valid step or not
    check_input_specs(check, data.get("inputs"))
    workflow_dir = Path(file).parent
    nodes, configs = check_steps(check, steps, workflow_dir)
    deps, status_deps = check_references(check, data, steps, raw_steps, step_index, nodes)
    order = dependency_order(check, steps, deps, step_index)
    check_triggers(check, data.get("on"))
    calendar = check_calendar(check, data, workflow_dir, step_index, steps)

    if check.problems or workflow is None:
        raise WorkflowInvalid(check.problems, check.warnings)
    return LoadedWorkflow(workflow, file, nodes, configs, deps, order, text, located, status_deps,
                          sorted(check.warnings), calendar)


def load_file(path, registry: Registry, environ=None) -> LoadedWorkflow:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise WorkflowInvalid([Problem(str(path), 1, 1, f"cannot read the file: {exc.strerror or exc}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        head = raw[:exc.start]
        line = head.count(b"\n") + 1
        col = len(head[head.rfind(b"\n") + 1:].decode("utf-8", errors="replace")) + 1
        raise WorkflowInvalid([Problem(str(path), line, col, f"the file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
                                       "save the file as UTF-8")]) from None
    return load_text(text, str(path), registry, environ)
