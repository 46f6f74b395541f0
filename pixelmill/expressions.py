"""``${{ ... }}`` expressions, rendered by jinja2's immutable sandbox with resource limits.

Only the text between ``${{`` and ``}}`` is handed to jinja2, as an expression;
the text around it is kept verbatim, so a literal ``{{`` or ``{%`` in a prompt
is never interpreted. A value that is exactly one expression keeps its native
type (a number stays a number, a list a list).

An expression's result is data: it is converted to plain JSON-like values (an undefined
value anywhere inside is an error) and a string built from expressions is a
:class:`~pixelmill.sandbox.Rendered` that remembers which characters were data, so no
node parses them as a template again. Every evaluation runs under the limits of
:mod:`pixelmill.sandbox` (output size, repetition, ranges, work).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field

from jinja2 import TemplateSyntaxError, Undefined, nodes
from jinja2.sandbox import is_internal_attribute

from . import sandbox
from .sandbox import LimitedSandbox, Rendered

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


def make_environment() -> LimitedSandbox:
    env = LimitedSandbox()
    env.filters["strftime"] = sandbox.guard_filter("strftime", _strftime)
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


def evaluate(parsed: Parsed, context: dict, on_secret=None):
    """Render a parsed value against ``context`` (plain data only).

    ``on_secret(value)`` is called with the result of every expression that reads ``secrets``: values
    derived from a secret can then be redacted like the secret itself.
    """
    if parsed.single:
        value = _eval_one(parsed.segments[0], context, on_secret)
        return Rendered.data(value) if isinstance(value, str) else value
    parts = []
    for seg in parsed.segments:
        if seg.is_expr:
            value = _eval_one(seg, context, on_secret)
            parts.append(("" if value is None else _text(value), True))
        else:
            parts.append((seg.text, False))
    text = Rendered(parts)
    if len(text) > sandbox.DEFAULT_LIMITS.max_length:
        raise ExpressionError(f"the rendered text has {len(text):,} characters "
                              f"(limit {sandbox.DEFAULT_LIMITS.max_length:,})", parsed.segments[0].offset)
    return text


def _text(value) -> str:
    return str(value)


@functools.lru_cache(maxsize=4096)
def _compiled(text: str):
    return _ENV.compile_expression(text, undefined_to_none=False)


def _eval_one(seg: Segment, context: dict, on_secret=None):
    try:
        compiled = _compiled(seg.text)
    except TemplateSyntaxError as exc:
        raise ExpressionError(f"malformed expression '{seg.text.strip()}': {exc.message}", seg.offset) from None
    uses_secret = any(r.root == "secrets" for r in _segment_refs(seg.text))
    try:
        with sandbox.budget():
            value = _plain(compiled(**context))
    except _Undefined:
        raise ExpressionError(f"expression '{seg.text.strip()}' is undefined (or holds an undefined value)",
                              seg.offset) from None
    except _NotData as exc:
        raise ExpressionError(f"expression '{seg.text.strip()}' gave {exc}, not data", seg.offset) from None
    except sandbox.LimitExceeded as exc:
        raise ExpressionError(f"expression '{seg.text.strip()}' failed: {exc}", seg.offset) from None
    except Exception as exc:  # UndefinedError, SecurityError, TypeError from user expressions
        # the message of a failure inside an expression that reads a secret may quote a transformed secret
        detail = f"{type(exc).__name__} (details hidden: the expression reads a secret)" if uses_secret else exc
        raise ExpressionError(f"expression '{seg.text.strip()}' failed: {detail}", seg.offset) from None
    if uses_secret and on_secret is not None:
        on_secret(value)
    return value


class _Undefined(Exception):
    pass


class _NotData(Exception):
    pass


def _plain(value, depth: int = 0):
    """An expression's result as plain data: dict (str keys), list, str, int, float, bool, None."""
    if depth > 100:
        raise _NotData("a structure nested more than 100 levels deep")
    if isinstance(value, Undefined):
        raise _Undefined()
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if type(value) is str or isinstance(value, Rendered) else str(value)
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else _key(k)): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple, set, frozenset, range)) or _is_iterator(value):
        out = []
        for item in value:
            out.append(_plain(item, depth + 1))
            if len(out) > sandbox.DEFAULT_LIMITS.max_length:
                raise sandbox.LimitExceeded("render limit: a result with too many items")
        return out
    raise _NotData(f"a {type(value).__name__}")


def _key(k) -> str:
    if isinstance(k, Undefined):
        raise _Undefined()
    if k is None or isinstance(k, (bool, int, float)):
        return str(k)
    raise _NotData(f"a mapping key of type {type(k).__name__}")


def _is_iterator(value) -> bool:
    return hasattr(value, "__next__") and hasattr(value, "__iter__")


def render(value, context: dict, on_secret=None):
    """Render every string in a nested structure of dicts and lists (see :func:`evaluate`)."""
    if isinstance(value, str):
        if OPEN not in value:
            return value
        parsed = _parsed(value)
        return evaluate(parsed, context, on_secret) if parsed.has_expr else value
    if isinstance(value, dict):
        return {k: render(v, context, on_secret) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context, on_secret) for v in value]
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
def _parsed(text: str) -> Parsed:
    return parse(text)  # treated as read-only by every caller


@functools.lru_cache(maxsize=4096)
def _segment_refs(expr: str) -> tuple:
    try:
        return tuple(references(ast_of(expr)))
    except ExpressionError:
        return ()


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
