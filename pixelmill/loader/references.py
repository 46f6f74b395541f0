"""References in a workflow: its expressions and ``needs``, and the dependencies between steps they make.

Every ``${{ }}`` in a step's ``with``, ``if`` and ``for_each`` and in the workflow's ``outputs`` is parsed
(syntax, blocked attributes) and each name it reads is checked: a known root (``inputs``, ``steps``, ...),
a declared input, an earlier step and one of its outputs, ``item``/``index`` only in the ``with`` of a
``for_each`` step, a secret that is set. A step waits for the steps it references or ``needs``; one that
only reads ``steps.X.status`` waits for X to finish whatever its outcome. Also: ``config`` is literal,
``for_each`` is one expression, and a bare ``{{ x }}`` outside a template field is a likely mistake.
"""

from __future__ import annotations

import re

from .. import expressions as ex
from ..model import Step
from ..node import TEMPLATE_FIELD, field_marked
from ..problems import did_you_mean, shorten
from .check import Check

CONTEXT_ROOTS = ("inputs", "steps", "trigger", "secrets", "run", "now", "today")
ITEM_ROOTS = ("item", "index")  # only in the 'with' of a step that has for_each
_BARE = re.compile(r"(?<!\$)\{\{([^{}]*)\}\}")  # '{{ x }}' without the '$': literal text, likely a mistake


def check_references(check: Check, data: dict, steps, raw_steps: list, step_index: dict, nodes: dict):
    """Check every expression and ``needs``; return each step's dependencies and, of those, the ones it
    only reads the status of: ``(deps, status_deps)``."""
    input_names = set(data.get("inputs") or {}) if isinstance(data.get("inputs"), dict) else set()
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
    return deps, status_deps


def _check_bare(check: Check, path, text: str) -> None:
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

    def __init__(self, check: Check, step_index: dict, by_id: dict, nodes: dict, input_names: set):
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


def _check_output(check: Check, path, ref, target: Step, nodes) -> None:
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


def _check_for_each(check: Check, refs: _Refs, i: int, step: Step, raw, hard: set, soft: set) -> None:
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
