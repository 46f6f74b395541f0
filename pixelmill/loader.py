"""Load a workflow file and validate everything, reporting every problem at once.

Checks run in layers, each on whatever the previous layers could read, so one
mistake does not hide the next: YAML syntax and duplicate keys; the workflow's
shape (unknown or mistyped keys at any level); node types and their config;
step inputs; expressions (syntax, blocked attributes, references to unknown or
later steps, unknown outputs and inputs); dependency cycles; schedules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ValidationError

from . import expressions as ex
from .model import InputSpec, Schedule, Step, Webhook, Workflow
from .problems import Problem, WorkflowInvalid, did_you_mean
from .pydantic_problems import problems_from
from .registry import NodeInfo, Registry
from .schedules import ScheduleError, build_trigger
from .yamlsource import Located, load

CONTEXT_ROOTS = ("inputs", "steps", "trigger", "secrets", "run", "now", "today")


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

    @property
    def name(self) -> str:
        return self.workflow.name


@dataclass
class _Check:
    located: Located
    registry: Registry
    problems: list[Problem] = field(default_factory=list)

    def add(self, path, message, hint="", key=False):
        self.problems.append(self.located.problem(path, message, hint, key=key))


def load_text(text: str, file: str, registry: Registry) -> LoadedWorkflow:
    located = load(text, file)
    check = _Check(located, registry, list(located.problems))
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

    nodes: dict[str, NodeInfo] = {}
    configs: dict[str, BaseModel] = {}
    for i, step in steps:
        info = _check_node(check, i, step)
        if info is None:
            continue
        nodes.setdefault(step.id, info)
        config = _check_config(check, i, step, info)
        if config is not None:
            configs.setdefault(step.id, config)
        _check_inputs(check, i, step, info)

    deps: dict[str, set[str]] = {step.id: set() for _, step in steps}
    for i, step in steps:
        where = ("steps", i)
        for path, expr in ex.walk_strings(step.with_, ("with",)):
            deps[step.id] |= _check_expr(check, where + path, expr, step.id, i, step_index, steps, nodes, input_names)
        if isinstance(step.if_, str):
            deps[step.id] |= _check_expr(check, where + ("if",), step.if_, step.id, i, step_index, steps, nodes,
                                         input_names, bare=True)
        for k, need in enumerate(step.needs):
            if need not in step_index:
                check.add(where + ("needs", k), f"step '{step.id}' needs unknown step '{need}'",
                          did_you_mean(need, step_index))
            else:
                deps[step.id].add(need)
        for path, expr in ex.walk_strings(step.config, ("config",)):
            if ex.OPEN in expr:
                check.add(where + path, f"step '{step.id}': config values are literal; expressions belong under 'with'",
                          "move this field to the step's 'with' inputs if the node accepts it")
    if isinstance(data.get("outputs"), dict):
        for path, expr in ex.walk_strings(data["outputs"], ("outputs",)):
            _check_expr(check, path, expr, None, len(steps) + 1, step_index, steps, nodes, input_names)

    order = _order(check, steps, deps, step_index)
    _check_triggers(check, data.get("on"))

    if check.problems or workflow is None:
        raise WorkflowInvalid(check.problems)
    return LoadedWorkflow(workflow, file, nodes, configs, deps, order, text, located)


def load_file(path, registry: Registry) -> LoadedWorkflow:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowInvalid([Problem(str(path), 1, 1, f"cannot read the file: {exc}")]) from None
    return load_text(text, str(path), registry)


def load_many(paths, registry: Registry) -> tuple[list[LoadedWorkflow], list[Problem]]:
    """Load several files; also report workflow names and webhook paths used twice."""
    loaded, problems = [], []
    for p in paths:
        try:
            loaded.append(load_file(p, registry))
        except WorkflowInvalid as exc:
            problems.extend(exc.problems)
    seen_names: dict[str, LoadedWorkflow] = {}
    seen_paths: dict[str, LoadedWorkflow] = {}
    for wf in loaded:
        located = wf.located
        if wf.name in seen_names:
            other = seen_names[wf.name]
            problems.append(located.problem(("name",), f"duplicate workflow name '{wf.name}' (also in {other.file})",
                                            "workflow names must be unique in a folder"))
        seen_names.setdefault(wf.name, wf)
        hook = wf.workflow.on.webhook
        if hook is not None:
            key = hook.path.strip("/")
            if key in seen_paths:
                other = seen_paths[key]
                problems.append(located.problem(("on", "webhook", "path"),
                                                f"duplicate webhook path '{hook.path}' (also in {other.file})",
                                                "each workflow needs its own webhook path"))
            seen_paths.setdefault(key, wf)
    bad = {p.file for p in problems}
    return [wf for wf in loaded if wf.file not in bad], sorted(problems)


def workflow_files(folder) -> list[Path]:
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


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


def _check_expr(check: _Check, path, text: str, step_id, index: int, step_index, steps, nodes, input_names,
                bare: bool = False) -> set[str]:
    """Check one string; return the step ids it refers to."""
    if bare and ex.OPEN not in text:
        text = ex.OPEN + text + ex.CLOSE  # 'if:' may be written without ${{ }}
    try:
        parsed = ex.parse(text)
        trees = [ex.ast_of(s.text, s.offset) for s in parsed.segments if s.is_expr]
    except ex.ExpressionError as exc:
        check.add(path, str(exc), "expressions look like ${{ steps.<id>.outputs.<name> }}")
        return set()
    found: set[str] = set()
    by_id = dict((s.id, s) for _, s in steps)
    for tree in trees:
        blocked = ex.blocked_attributes(tree)
        for name in blocked:
            check.add(path, f"expression reaches blocked attribute '{name}'",
                      "names starting with '_' and interpreter internals are not available in expressions")
        if blocked:
            continue
        for ref in ex.references(tree):
            if ref.root not in CONTEXT_ROOTS:
                check.add(path, f"unknown name '{ref.root}' in expression",
                          did_you_mean(ref.root, CONTEXT_ROOTS) or "available: " + ", ".join(CONTEXT_ROOTS))
            elif ref.root == "inputs" and ref.path and ref.path[0] not in input_names:
                check.add(path, f"unknown workflow input '{ref.path[0]}'",
                          did_you_mean(str(ref.path[0]), input_names) or "declare it under 'inputs'")
            elif ref.root == "steps" and ref.path:
                target = ref.path[0]
                if target == step_id:
                    check.add(path, f"step '{step_id}' refers to itself (a dependency cycle)")
                elif target not in step_index:
                    check.add(path, f"reference to unknown step '{target}'", did_you_mean(str(target), step_index))
                elif step_index[target] > index:
                    check.add(path, f"step '{step_id}' refers to step '{target}', which comes later",
                              f"move '{target}' above '{step_id}'")
                else:
                    found.add(target)
                    if target in by_id:
                        _check_output(check, path, ref, by_id[target], nodes)
    return found


def _check_output(check: _Check, path, ref, target: Step, nodes) -> None:
    if len(ref.path) < 2:
        return
    if ref.path[1] not in ("outputs", "status"):
        check.add(path, f"'steps.{target.id}' has 'outputs' and 'status', not '{ref.path[1]}'")
        return
    info = nodes.get(target.id)
    if ref.path[1] != "outputs" or len(ref.path) < 3 or info is None:
        return
    known = info.cls.Outputs.model_fields
    if ref.path[2] not in known:
        check.add(path, f"unknown output '{ref.path[2]}' of step '{target.id}' (node {info.type})",
                  did_you_mean(str(ref.path[2]), known) or "outputs: " + ", ".join(known))


def _order(check: _Check, steps, deps, step_index) -> list[str]:
    """Kahn's algorithm, list order as tie-break; report a cycle once."""
    remaining = {s.id: set(deps[s.id]) for _, s in steps if s.id in deps}
    order: list[str] = []
    ids = [s.id for _, s in steps]
    while True:
        ready = [i for i in ids if i in remaining and not (remaining[i] - set(order))]
        if not ready:
            break
        order.append(ready[0])
        del remaining[ready[0]]
    if remaining:
        cycle = _find_cycle(remaining)
        if cycle:
            first = cycle[0]
            check.add(("steps", step_index[first], "id"), "dependency cycle: " + " -> ".join(cycle + [first]),
                      "remove one 'needs' or reference")
    return order


def _find_cycle(graph: dict[str, set[str]]) -> list[str]:
    for start in graph:
        path, node, seen = [], start, set()
        while node in graph and node not in seen:
            seen.add(node)
            path.append(node)
            nxt = sorted(d for d in graph[node] if d in graph)
            if not nxt:
                break
            node = nxt[0]
        if node in path:
            return path[path.index(node):]
    return []


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
        if auth.type in ("header", "hmac") and not auth.secret:
            check.add(path, f"webhook auth '{auth.type}' needs 'secret' (the environment variable holding the key)")
        if auth.type == "basic" and not (auth.username_secret and auth.password_secret):
            check.add(path, "webhook auth 'basic' needs 'username_secret' and 'password_secret'")


__all__ = ["LoadedWorkflow", "load_text", "load_file", "load_many", "workflow_files", "InputSpec"]
