"""Load a workflow file and validate everything, reporting every problem at once.

Checks run in layers, each on whatever the previous layers could read, so one
mistake does not hide the next: YAML syntax and duplicate keys; the workflow's
shape (unknown or mistyped keys at any level); node types and their config;
step inputs; expressions (syntax, blocked attributes, references to unknown or
later steps, unknown outputs and inputs); dependency cycles; schedules.
"""

from __future__ import annotations

import heapq
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ValidationError

from . import expressions as ex
from .calendar.entries import Calendar, read_calendar
from .model import InputSpec, Schedule, Step, Webhook, Workflow, value_fits
from .node import TEMPLATE_FIELD, StepCheck, field_marked, resolve_paths
from .problems import Problem, WorkflowInvalid, did_you_mean, shorten
from .pydantic_problems import problems_from
from .registry import NodeInfo, Registry
from .schedules import ScheduleError, build_trigger
from .yamlsource import Located, load

CONTEXT_ROOTS = ("inputs", "steps", "trigger", "secrets", "run", "now", "today")
ITEM_ROOTS = ("item", "index")  # only in the 'with' of a step that has for_each
log = logging.getLogger(__name__)
_BARE = re.compile(r"(?<!\$)\{\{([^{}]*)\}\}")  # '{{ x }}' without the '$': literal text, likely a mistake


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


@dataclass
class _Check:
    located: Located
    registry: Registry
    problems: list[Problem] = field(default_factory=list)

    environ: object = None
    warnings: list[Problem] = field(default_factory=list)

    def add(self, path, message, hint="", key=False):
        self.problems.append(self.located.problem(path, message, hint, key=key))

    def warn(self, path, message, hint=""):
        self.warnings.append(self.located.problem(path, message, hint, level="warning"))

    def secret(self, path, name) -> None:
        if isinstance(name, str) and name and not self.environ.get(name):
            self.warn(path, f"secret '{name}' is not set in the environment",
                      f"export {name} before 'pixelmill serve' or 'run'; runs that use it fail until then")


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
    check = _Check(located, registry, list(located.problems), environ)
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

    input_names = set(data.get("inputs") or {}) if isinstance(data.get("inputs"), dict) else set()
    steps = _parse_steps(data.get("steps"))
    step_index = {}  # every step id written in the file, valid step or not
    raw_steps = data.get("steps") if isinstance(data.get("steps"), list) else []
    for i, raw in enumerate(raw_steps):
        sid = raw.get("id") if isinstance(raw, dict) else None
        if not isinstance(sid, str):
            continue
        if sid in step_index:
            first = located.where(("steps", step_index[sid], "id"))[0]
            check.add(("steps", i, "id"), f"duplicate step id '{sid}' (first defined on line {first})",
                      "each step needs its own id")
        else:
            step_index[sid] = i

    _check_input_specs(check, data.get("inputs"))
    workflow_dir = Path(file).parent
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

    refs = _Refs(check, step_index, dict((s.id, s) for _, s in steps), nodes, input_names)
    deps: dict[str, set[str]] = {step.id: set() for _, step in steps}
    status_deps: dict[str, set[str]] = {}
    for i, step in steps:
        where = ("steps", i)
        hard: set[str] = set()
        soft: set[str] = set()
        info = nodes.get(step.id)
        _check_for_each(check, refs, i, step, raw_steps[i], hard, soft)
        for path, expr in ex.walk_strings(step.with_, ("with",)):
            refs.check(where + path, expr, step.id, i, hard, soft, item_ok=step.for_each is not None)
            if info is None or not field_marked(info.cls.Inputs, path[1:], TEMPLATE_FIELD):
                _check_bare(check, where + path, expr)
        if isinstance(step.if_, str):
            refs.check(where + ("if",), step.if_, step.id, i, hard, soft, bare=True)
        for k, need in enumerate(step.needs):
            if need not in step_index:
                check.add(where + ("needs", k), f"step '{step.id}' needs unknown step '{need}'",
                          did_you_mean(need, step_index))
            else:
                hard.add(need)
        deps[step.id] = hard | soft
        if soft - hard:
            status_deps[step.id] = soft - hard
        for path, expr in ex.walk_strings(step.config, ("config",)):
            if ex.OPEN in expr:
                check.add(where + path, f"step '{step.id}': config values are literal; expressions belong under 'with'",
                          "move this field to the step's 'with' inputs if the node accepts it")
    if isinstance(data.get("outputs"), dict):
        for path, expr in ex.walk_strings(data["outputs"], ("outputs",)):
            refs.check(path, expr, None, len(raw_steps) + 1, set(), set())
            _check_bare(check, path, expr)

    order = _order(check, steps, deps, step_index)
    _check_triggers(check, data.get("on"))
    calendar = _check_calendar(check, data, workflow_dir, step_index, steps)

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


def load_many(paths, registry: Registry, environ=None) -> tuple[list[LoadedWorkflow], list[Problem]]:
    """Load several files; also report workflow names and webhook routes used twice.

    Never raises for a bad file: its problems are returned and the other files still load.
    """
    loaded, problems = [], []
    for p in paths:
        try:
            loaded.append(load_file(p, registry, environ))
        except WorkflowInvalid as exc:
            problems.extend(exc.problems)
    seen_names: dict[str, LoadedWorkflow] = {}
    routes: list[tuple[list[str], LoadedWorkflow]] = []
    for wf in loaded:
        located = wf.located
        if wf.name in seen_names:
            other = seen_names[wf.name]
            problems.append(located.problem(("name",), f"duplicate workflow name '{wf.name}' (also in {other.file})",
                                            "workflow names must be unique in a folder"))
        seen_names.setdefault(wf.name, wf)
        hook = wf.workflow.on.webhook
        if hook is not None:
            parts = [p for p in hook.path.strip("/").split("/") if p]
            other = next((o for r, o in routes if _routes_clash(parts, r)), None)
            if other is not None:
                theirs = other.workflow.on.webhook.path
                same = theirs.strip("/") == hook.path.strip("/")
                problems.append(located.problem(
                    ("on", "webhook", "path"),
                    f"duplicate webhook path '{hook.path}' (also in {other.file})" if same else
                    f"webhook path '{hook.path}' matches the same requests as '{theirs}' in {other.file}",
                    "each workflow needs its own webhook path" if same else
                    "make a literal segment differ, e.g. 'items/by-id/:id' and 'items/by-name/:name'"))
            else:
                routes.append((parts, wf))
    bad = {p.file for p in problems}
    return [wf for wf in loaded if wf.file not in bad], sorted(problems)


def _routes_clash(a: list[str], b: list[str]) -> bool:
    """Whether two webhook routes match a same request path with neither preferred.

    A literal segment wins over a ':param' one, so routes clash only when they have as many parameters
    and every segment could match the same text.
    """
    if len(a) != len(b):
        return False
    def is_param(seg):
        return seg.startswith(":") and len(seg) > 1
    if sum(map(is_param, a)) != sum(map(is_param, b)):
        return False
    return all(x == y or is_param(x) or is_param(y) for x, y in zip(a, b))


def workflow_files(folder) -> list[Path]:
    """The workflow files of a folder: ``*.yaml``/``*.yml``, except calendar files (``calendar.yaml``,
    ``*.calendar.yaml``: the rows of a workflow's ``on.calendar``, see docs/calendar.md)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()
                  and not is_calendar_file(p))


def is_calendar_file(path: Path) -> bool:
    return path.stem == "calendar" or path.stem.endswith(".calendar")


# ---------------------------------------------------------------------------


def _parse_steps(raw) -> list[tuple[int, Step]]:
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


def _check_node(check: _Check, i: int, step: Step) -> NodeInfo | None:
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


def _check_config(check: _Check, i: int, step: Step, info: NodeInfo):
    try:
        return info.cls.Config.model_validate(step.config)
    except ValidationError as exc:
        label = f"step '{step.id}' ({info.type}) config"
        check.problems.extend(problems_from(exc, check.located, ("steps", i, "config"), info.cls.Config, label))
        return None


def _check_inputs(check: _Check, i: int, step: Step, info: NodeInfo) -> None:
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


def _check_input_specs(check: _Check, inputs) -> None:
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


def _node_check(check: _Check, i: int, step: Step, info: NodeInfo, config: BaseModel, workflow_dir: Path) -> None:
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


def _check_bare(check: _Check, path, text: str) -> None:
    """Warn about '{{ x }}' without '$': it stays literal text, and is posted as such."""
    if "{{" not in text:
        return
    for m in _BARE.finditer(text):
        inner = m.group(1).strip()
        if inner:
            check.warn(path, f"'{shorten(m.group(0))}' looks like an expression but is literal text",
                       f"did you mean '${{{{ {shorten(inner)} }}}}'?")
            return


class _Refs:
    """Checks the expressions of one workflow: syntax, names, references to steps and their outputs."""

    def __init__(self, check: _Check, step_index: dict, by_id: dict, nodes: dict, input_names: set):
        self.check_ = check
        self.step_index = step_index
        self.by_id = by_id
        self.nodes = nodes
        self.input_names = input_names

    def check(self, path, text: str, step_id, index: int, hard: set, soft: set, bare: bool = False,
              item_ok: bool = False) -> None:
        """Check one string; add the steps it needs to ``hard``, those whose status only it reads to ``soft``."""
        check = self.check_
        if bare and ex.OPEN not in text:
            text = ex.OPEN + text + ex.CLOSE  # 'if:' may be written without ${{ }}
        elif ex.OPEN not in text:
            return
        try:
            parsed = ex.parse(text)
            trees = [ex.ast_of(seg.text, seg.offset) for seg in parsed.segments if seg.is_expr]
        except ex.ExpressionError as exc:
            check.add(path, str(exc), "expressions look like ${{ steps.<id>.outputs.<name> }}")
            return
        for tree in trees:
            blocked = ex.blocked_attributes(tree)
            for name in blocked:
                check.add(path, f"expression reaches blocked attribute '{shorten(name)}'",
                          "names starting with '_' and interpreter internals are not available in expressions")
            if blocked:
                continue
            for ref in ex.references(tree):
                self._reference(path, ref, step_id, index, hard, soft, item_ok)

    def _reference(self, path, ref, step_id, index, hard: set, soft: set, item_ok: bool = False) -> None:
        check, step_index = self.check_, self.step_index
        if ref.root in ITEM_ROOTS:
            if not item_ok:
                where = ("in the workflow's outputs" if step_id is None else
                         f"in '{path[2]}' of step '{step_id}'" if len(path) > 2 and path[2] != "with" else
                         f"in step '{step_id}', which has no 'for_each'")
                check.add(path, f"'{ref.root}' is only available in the 'with' of a step that has 'for_each' "
                                f"(used {where})",
                          "add 'for_each: ${{ <list> }}' to the step, or refer to a list element another way")
        elif ref.root not in CONTEXT_ROOTS:
            check.add(path, f"unknown name '{shorten(ref.root)}' in expression",
                      did_you_mean(ref.root, CONTEXT_ROOTS) or "available: " + ", ".join(CONTEXT_ROOTS))
        elif ref.root == "inputs" and ref.path and ref.path[0] not in self.input_names:
            check.add(path, f"unknown workflow input '{shorten(str(ref.path[0]))}'",
                      did_you_mean(str(ref.path[0]), self.input_names) or "declare it under 'inputs'")
        elif ref.root == "secrets" and ref.path:
            check.secret(path, str(ref.path[0]))
        elif ref.root == "steps" and ref.path:
            target = ref.path[0]
            if target == step_id:
                check.add(path, f"step '{step_id}' refers to itself (a dependency cycle)")
            elif target not in step_index:
                check.add(path, f"reference to unknown step '{shorten(str(target))}'",
                          did_you_mean(str(target), step_index))
            elif step_index[target] > index:
                check.add(path, f"step '{step_id}' refers to step '{target}', which comes later",
                          f"move '{target}' above '{step_id}'")
            else:
                # reading only a step's status waits for it to finish but does not need it to succeed
                (soft if ref.path[1:2] == ("status",) else hard).add(target)
                if target in self.by_id:
                    _check_output(check, path, ref, self.by_id[target], self.nodes)


def _check_output(check: _Check, path, ref, target: Step, nodes) -> None:
    if len(ref.path) < 2:
        return
    if ref.path[1] not in ("outputs", "status"):
        check.add(path, f"'steps.{target.id}' has 'outputs' and 'status', not '{shorten(str(ref.path[1]))}'")
        return
    info = nodes.get(target.id)
    if ref.path[1] != "outputs" or len(ref.path) < 3 or info is None:
        return
    known = info.cls.Outputs.model_fields
    if ref.path[2] not in known:
        check.add(path, f"unknown output '{shorten(str(ref.path[2]))}' of step '{target.id}' (node {info.type})",
                  did_you_mean(str(ref.path[2]), known) or "outputs: " + ", ".join(known))
    elif target.for_each is not None and len(ref.path) > 3 and isinstance(ref.path[3], str):
        name = ref.path[2]
        check.add(path, f"step '{target.id}' runs for_each: 'outputs.{name}' is a list (one entry per item), "
                        f"it has no '{shorten(str(ref.path[3]))}'",
                  f"pick one item, e.g. 'steps.{target.id}.outputs.{name}[0].{shorten(str(ref.path[3]))}', "
                  f"or pass the whole list")


def _check_for_each(check: _Check, refs: _Refs, i: int, step: Step, raw, hard: set, soft: set) -> None:
    """'for_each' is one expression; 'max_parallel' and 'on_item_error' need it."""
    where = ("steps", i)
    if step.for_each is None:
        for key in ("max_parallel", "on_item_error"):
            if isinstance(raw, dict) and key in raw:
                check.add(where + (key,), f"step '{step.id}': '{key}' only applies to a step with 'for_each'",
                          "add 'for_each: ${{ <list> }}' or remove this key", key=True)
        return
    try:
        single = ex.parse(step.for_each).single
    except ex.ExpressionError:
        single = True  # reported by the reference check below
    if not single:
        check.add(where + ("for_each",), f"step '{step.id}': 'for_each' must be one expression giving a list, "
                                         f"e.g. '${{{{ inputs.prompts }}}}'",
                  "a literal list belongs in a workflow input's default, or write '${{ [\"a\", \"b\"] }}'")
        return
    refs.check(where + ("for_each",), step.for_each, step.id, i, hard, soft)


def _order(check: _Check, steps, deps, step_index) -> list[str]:
    """Kahn's algorithm with list order as tie-break (a heap: O(n log n)); report a real cycle once.

    Dependencies on steps that are not valid (reported elsewhere) do not hold anything back here.
    """
    position = {s.id: n for n, (_, s) in enumerate(steps)}
    ids = [s.id for _, s in steps]
    waiting = {sid: 0 for sid in position}
    dependents: dict[str, list[str]] = {sid: [] for sid in position}
    for sid in position:
        for dep in deps.get(sid, ()):
            if dep in position:
                waiting[sid] += 1
                dependents[dep].append(sid)
    heap = [position[sid] for sid in position if waiting[sid] == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        sid = ids[heapq.heappop(heap)]
        order.append(sid)
        for nxt in dependents[sid]:
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                heapq.heappush(heap, position[nxt])
    if len(order) < len(position):
        left = {sid for sid in position if waiting[sid] > 0}
        cycle = _find_cycle({sid: {d for d in deps.get(sid, ()) if d in left} for sid in left})
        if cycle:
            first = min(cycle, key=position.get)
            k = cycle.index(first)
            cycle = cycle[k:] + cycle[:k]
            check.add(("steps", step_index[first], "id"), "dependency cycle: " + " -> ".join(cycle + [first]),
                      "remove one 'needs' or reference")
    return order


def _find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """A cycle in ``graph`` (step -> steps it waits for), found by an iterative depth-first search."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for start in graph:
        if state.get(start):
            continue
        path = [start]
        state[start] = 1
        iters = [iter(sorted(graph[start]))]
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(graph[nxt])))
    return []


def _check_calendar(check: _Check, data: dict, workflow_dir: Path, step_index: dict, steps) -> Calendar:
    """Dated entries (pixelmill/calendar/entries.py). With approval, some step must read
    ``trigger.calendar.phase`` in its ``if:`` (the posting step runs only in the 'post' phase)."""
    calendar, errors, warnings = read_calendar(check.located, data.get("on"), workflow_dir, data.get("inputs"),
                                               set(step_index))
    check.problems.extend(errors)
    check.warnings.extend(warnings)
    if calendar.settings.approval and not any(isinstance(s.if_, str) and "trigger.calendar.phase" in s.if_
                                              for _, s in steps):
        check.add(("on", "calendar", "approval"), "calendar approval needs the posting step(s) to wait for the "
                  "'post' phase", "add  if: ${{ trigger.calendar.phase == 'post' }}  to each posting step")
    return calendar


def _check_triggers(check: _Check, on) -> None:
    if not isinstance(on, dict):
        return
    schedules = on.get("schedule")
    items = [schedules] if isinstance(schedules, dict) else schedules if isinstance(schedules, list) else []
    for k, raw in enumerate(items):
        path = ("on", "schedule") if isinstance(schedules, dict) else ("on", "schedule", k)
        try:
            schedule = Schedule.model_validate(raw)
        except ValidationError:
            continue
        try:
            build_trigger(schedule)
        except ScheduleError as exc:
            text = str(exc)
            field_name = "timezone" if "timezone" in text else "cron" if schedule.cron is not None else "interval"
            target = path + (field_name,) if (path + (field_name,)) in check.located.values else path
            check.add(target, text, "cron is 'minute hour day month weekday', e.g. '0 9 * * 1-5'; "
                                    "timezones are IANA names like 'Europe/Paris'")
    hook = on.get("webhook")
    if isinstance(hook, dict):
        try:
            webhook = Webhook.model_validate(hook)
        except ValidationError:
            return
        auth = webhook.auth
        path = ("on", "webhook", "auth")
        for key in ("secret", "username_secret", "password_secret"):
            check.secret(path + (key,), getattr(auth, key))
        if auth.type in ("header", "hmac") and not auth.secret:
            check.add(path, f"webhook auth '{auth.type}' needs 'secret' (the environment variable holding the key)")
        if auth.type == "basic" and not (auth.username_secret and auth.password_secret):
            check.add(path, "webhook auth 'basic' needs 'username_secret' and 'password_secret'")


__all__ = ["LoadedWorkflow", "load_text", "load_file", "load_many", "workflow_files", "InputSpec"]
