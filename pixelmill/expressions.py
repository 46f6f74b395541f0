"""``${{ ... }}`` expressions, rendered by jinja2's immutable sandbox.

Only the text between ``${{`` and ``}}`` is handed to jinja2, as an expression;
the text around it is kept verbatim, so a literal ``{{`` or ``{%`` in a prompt
is never interpreted. A value that is exactly one expression keeps its native
type (a number stays a number, a list a list).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, is_internal_attribute

OPEN, CLOSE = "${{", "}}"
MAX_NESTING = 24  # brackets inside one expression (jinja2's parser recurses per level)
MAX_TREE_DEPTH = 64  # depth of the parsed expression (a chain of 2,000 '+' is 2,000 deep)
MAX_LENGTH = 10_000  # characters of one expression


class ExpressionError(ValueError):
    """An expression could not be parsed or evaluated."""

    def __init__(self, message: str, offset: int = 0):
        super().__init__(message)
        self.offset = offset  # characters into the string where the problem starts


def _strftime(value, fmt: str = "%Y-%m-%d") -> str:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.strftime(fmt)


def make_environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    env.filters["strftime"] = _strftime
    return env


_ENV = make_environment()  # stateless after construction: safe to share


@dataclass(frozen=True)
class Segment:
    text: str  # literal text, or the expression source
    is_expr: bool
    offset: int  # where it starts in the original string


@dataclass
class Parsed:
    source: str
    segments: list[Segment] = field(default_factory=list)

    @property
    def single(self) -> bool:
        return len(self.segments) == 1 and self.segments[0].is_expr

    @property
    def has_expr(self) -> bool:
        return any(s.is_expr for s in self.segments)


def parse(source: str) -> Parsed:
    """Split a string into literal text and expressions; raise ``ExpressionError`` if malformed."""
    parsed = Parsed(source)
    pos = 0
    while True:
        start = source.find(OPEN, pos)
        if start < 0:
            if pos < len(source):
                parsed.segments.append(Segment(source[pos:], False, pos))
            break
        end = source.find(CLOSE, start + len(OPEN))
        if end < 0:
            raise ExpressionError("expression opened with '${{' is never closed with '}}'", start)
        if start > pos:
            parsed.segments.append(Segment(source[pos:start], False, pos))
        expr = source[start + len(OPEN) : end]
        if not expr.strip():
            raise ExpressionError("empty expression '${{ }}'", start)
        parsed.segments.append(Segment(expr, True, start))
        pos = end + len(CLOSE)
    # stripped single expression keeps its native type: "  ${{ x }} " is still one expression
    if len(parsed.segments) > 1 and sum(s.is_expr for s in parsed.segments) == 1:
        if all(s.is_expr or not s.text.strip() for s in parsed.segments):
            parsed.segments = [s for s in parsed.segments if s.is_expr]
    return parsed


def _short(text: str, limit: int = 80) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit // 2 - 2] + "[...]" + text[-(limit // 2 - 3):]


def _bracket_depth(expr: str) -> int:
    """Deepest nesting of (), [] and {} outside string literals."""
    depth = deepest = 0
    quote = None
    escaped = False
    for ch in expr:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth = max(0, depth - 1)
    return deepest


def _tree_depth(tree: nodes.Node) -> int:
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_TREE_DEPTH:
            break
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())
    return deepest


def check_limits(expr: str, offset: int = 0) -> None:
    """Refuse expressions too long or too deeply nested to parse safely."""
    if len(expr) > MAX_LENGTH:
        raise ExpressionError(f"expression '{_short(expr)}' is longer than {MAX_LENGTH} characters", offset)
    if _bracket_depth(expr) > MAX_NESTING:
        raise ExpressionError(f"expression '{_short(expr)}' nests brackets more than {MAX_NESTING} deep", offset)


_DOTTED = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*")
_KEYWORDS = {"and", "or", "not", "in", "is", "if", "else", "true", "false", "none", "True", "False", "None"}


def _dotted_tree(expr: str) -> nodes.Template | None:
    """The tree jinja2 would parse for a plain ``a.b.c`` (the common case), built without its parser."""
    m = _DOTTED.fullmatch(expr)
    if m is None or m.group(1) in _KEYWORDS:
        return None
    node: nodes.Expr = nodes.Name(m.group(1), "load", lineno=1)
    for attr in m.group(2).split(".")[1:]:
        node = nodes.Getattr(node, attr, "load", lineno=1)
    return nodes.Template([nodes.Output([node], lineno=1)], lineno=1)


def ast_of(expr: str, offset: int = 0) -> nodes.Template:
    check_limits(expr, offset)
    tree = _dotted_tree(expr)
    if tree is not None:
        return tree
    try:
        tree = _ENV.parse("{{ " + expr + " }}")
    except TemplateSyntaxError as exc:
        raise ExpressionError(f"malformed expression '{_short(expr)}': {exc.message}", offset) from None
    except RecursionError:
        raise ExpressionError(f"expression '{_short(expr)}' is nested too deeply", offset) from None
    if _tree_depth(tree) > MAX_TREE_DEPTH:
        raise ExpressionError(f"expression '{_short(expr)}' is too complex (more than {MAX_TREE_DEPTH} levels deep)",
                              offset)
    return tree


@dataclass(frozen=True)
class Reference:
    root: str  # steps, inputs, trigger, secrets, ...
    path: tuple  # constant attribute/item names after the root, as far as they are constant


def references(tree: nodes.Node) -> list[Reference]:
    """Every ``name.attr['item']...`` chain in an expression, outermost chains only."""
    found: list[Reference] = []

    def chain(node) -> tuple[str, tuple] | None:
        parts: list = []
        while True:
            if isinstance(node, nodes.Getattr):
                parts.append(node.attr)
                node = node.node
            elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
                parts.append(node.arg.value)
                node = node.node
            elif isinstance(node, nodes.Getitem):
                parts.clear()  # dynamic index: keep only what lies before it
                node = node.node
            elif isinstance(node, nodes.Name):
                return node.name, tuple(reversed(parts))
            else:
                return None

    def visit(node, inside_chain: bool = False):
        if isinstance(node, (nodes.Getattr, nodes.Getitem, nodes.Name)) and not inside_chain:
            got = chain(node)
            if got is not None:
                found.append(Reference(*got))
        child_in_chain = isinstance(node, (nodes.Getattr, nodes.Getitem))
        for child in node.iter_child_nodes():
            is_base = child_in_chain and child is node.node
            visit(child, inside_chain=is_base and (inside_chain or child_in_chain))

    visit(tree)
    return found


def blocked_attributes(tree: nodes.Node) -> list[str]:
    """Attribute or item names the sandbox refuses (``__class__``, ``_private``, ``mro``...)."""
    blocked = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
        if not isinstance(name, str):
            continue
        if name.startswith("_") or is_internal_attribute(object(), name) or name in _UNSAFE_NAMES:
            blocked.append(name)
    return blocked


_UNSAFE_NAMES = {"mro", "func_globals", "f_globals", "gi_frame", "gi_code", "cr_frame", "cr_code", "format_map"}


def evaluate(parsed: Parsed, context: dict):
    """Render a parsed value against ``context`` (plain data only)."""
    if parsed.single:
        return _eval_one(parsed.segments[0], context)
    out = []
    for seg in parsed.segments:
        if seg.is_expr:
            value = _eval_one(seg, context)
            out.append("" if value is None else str(value))
        else:
            out.append(seg.text)
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def _compiled(text: str):
    return _ENV.compile_expression(text, undefined_to_none=False)


def _eval_one(seg: Segment, context: dict):
    try:
        compiled = _compiled(seg.text)
    except TemplateSyntaxError as exc:
        raise ExpressionError(f"malformed expression '{seg.text.strip()}': {exc.message}", seg.offset) from None
    try:
        value = compiled(**context)
    except Exception as exc:  # UndefinedError, SecurityError, TypeError from user expressions
        raise ExpressionError(f"expression '{seg.text.strip()}' failed: {exc}", seg.offset) from None
    if isinstance(value, StrictUndefined):
        raise ExpressionError(f"expression '{seg.text.strip()}' is undefined", seg.offset)
    return value


def render(value, context: dict):
    """Render every string in a nested structure of dicts and lists."""
    if isinstance(value, str):
        parsed = parse(value)
        return evaluate(parsed, context) if parsed.has_expr else value
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    return value


def walk_strings(value, path: tuple = ()):
    """Yield ``(path, string)`` for every string in a nested structure."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from walk_strings(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk_strings(v, path + (i,))


@functools.lru_cache(maxsize=4096)
def _string_refs(text: str) -> tuple:
    parsed = parse(text)
    return tuple(r for s in parsed.segments if s.is_expr for r in references(ast_of(s.text)))


def referenced_secrets(value) -> set[str]:
    """Names used as ``secrets.NAME`` anywhere in a nested value (strings that fail to parse are skipped)."""
    names = set()
    for _, text in walk_strings(value):
        if OPEN not in text:
            continue
        try:
            refs = _string_refs(text)
        except ExpressionError:
            continue
        names.update(str(r.path[0]) for r in refs if r.root == "secrets" and r.path)
    return names
