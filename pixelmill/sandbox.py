"""A jinja2 immutable sandbox with resource limits, and text that remembers which parts are data.

Stands alone (imports only jinja2): the expression engine and template-rendering nodes share it.

Limits, per render: the size of every string or list an operation builds (``'a' * 10**9``,
``[0] * 10**8``, ``'%999999999s' | format(1)``, ``'x'.center(10**9)``, joins and concatenations), the
size of integers (``10 ** 10 ** 10``), ``range`` sizes, the total output, and the work done (loop
iterations, calls and filters). Sizes are checked *before* an operation allocates where the size can be
known in advance. A breach raises :class:`LimitExceeded`, a ``TemplateRuntimeError``.

:class:`Rendered` is a ``str`` that knows which of its characters were literal workflow text and which
were data (the results of ``${{ }}`` expressions); :func:`render_template` compiles only the literal
text and inserts the data as plain values, so data is never parsed as a template.
"""

from __future__ import annotations

import functools
import re
import string
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, StrictUndefined, nodes
from jinja2.exceptions import TemplateRuntimeError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer


class LimitExceeded(TemplateRuntimeError):
    """A render went past one of its resource limits."""


@dataclass(frozen=True)
class Limits:
    max_length: int = 1_000_000  # characters of a built string, items of a built list, characters of output
    max_range: int = 10_000  # items of one range()
    max_work: int = 100_000  # loop iterations + calls + filters in one render (a macro call counts 4)
    max_int_bits: int = 8192  # integers built by arithmetic
    max_seconds: float = 10.0  # wall clock of one render
    max_built: int = 20_000_000  # characters and items of all values operations build in one render


DEFAULT_LIMITS = Limits()


class _Budget:
    __slots__ = ("limits", "work", "output", "built", "check", "deadline")

    def __init__(self, limits: Limits, check=None):
        self.limits = limits
        self.work = 0
        self.output = 0
        self.built = 0
        self.check = check
        self.deadline = time.monotonic() + limits.max_seconds

    def tick(self, n: int = 1) -> None:
        self.work += n
        if self.work > self.limits.max_work:
            raise LimitExceeded(f"render limit: more than {self.limits.max_work:,} loop iterations, calls and "
                                "filters in one render")
        if self.work & 127 == 0:
            if self.check is not None:
                self.check()  # e.g. a node's ctx.check_cancelled(): stops a render on timeout or cancel
            if time.monotonic() > self.deadline:
                raise LimitExceeded(f"render limit: took more than {self.limits.max_seconds:g} s")

    def charge(self, size: int) -> None:
        self.output += size
        if self.output > self.limits.max_length:
            raise LimitExceeded(f"render limit: output longer than {self.limits.max_length:,} characters")


_BUDGET: ContextVar[_Budget | None] = ContextVar("pixelmill_render_budget", default=None)


def _limits() -> Limits:
    budget = _BUDGET.get()
    return budget.limits if budget is not None else DEFAULT_LIMITS


def _tick(n: int = 1) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.tick(n)


@contextmanager
def budget(limits: Limits | None = None, check=None):
    """Every render inside this block shares one budget (``check`` is called now and then; it may raise)."""
    token = _BUDGET.set(_Budget(limits or DEFAULT_LIMITS, check))
    try:
        yield
    finally:
        _BUDGET.reset(token)


# -- size estimates, made before an operation allocates -------------------------------------------------

def estimate(value: Any, cap: int) -> int:
    """Roughly how many characters ``str(value)`` has, counting no further than ``cap``."""
    total = 0
    stack = [value]
    while stack and total <= cap:
        v = stack.pop()
        if isinstance(v, str):
            total += len(v)
        elif isinstance(v, (list, tuple, set, frozenset)):
            total += 2 + 2 * len(v)
            stack.extend(v)
        elif isinstance(v, dict):
            total += 2 + 4 * len(v)
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, int) and not isinstance(v, bool):
            total += v.bit_length() // 3 + 1
        else:
            total += 24
    return total


def _too_long(what: str, size: int) -> LimitExceeded:
    return LimitExceeded(f"render limit: {what} would have {size:,} characters or items "
                         f"(limit {_limits().max_length:,})")


def _check_size(what: str, size: int) -> None:
    if size > _limits().max_length:
        raise _too_long(what, size)


def _check_result(value: Any, what: str) -> Any:
    budget = _BUDGET.get()
    lim = budget.limits if budget is not None else DEFAULT_LIMITS
    if isinstance(value, (str, list, tuple, dict, set, frozenset, bytes)):
        if len(value) > lim.max_length:
            raise _too_long(what, len(value))
        if budget is not None:
            budget.built += len(value)
            if budget.built > lim.max_built:  # many values, each under the limit, kept alive together
                raise LimitExceeded(f"render limit: operations built more than {lim.max_built:,} characters "
                                    "and items in one render")
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > lim.max_int_bits:
        raise LimitExceeded(f"render limit: {what} built an integer of {value.bit_length():,} bits "
                            f"(limit {lim.max_int_bits:,})")
    return value


def _check_stringified(args, what: str) -> None:
    cap = _limits().max_length
    for a in args:
        if isinstance(a, (list, tuple, dict, set, frozenset)):
            size = estimate(a, cap)
            if size > cap:
                raise _too_long(what, size)


_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[diouxXeEfFgGcrsa%]")


def _check_printf(fmt: str, args) -> None:
    lim = _limits().max_length
    for m in _PRINTF.finditer(fmt):
        for g in m.groups():
            if g == "*":
                raise LimitExceeded("render limit: '*' widths are not allowed in format strings")
            if g and int(g) > lim:
                raise _too_long("a format width", int(g))
    _check_stringified(args if isinstance(args, (tuple, list)) else [args], "formatting")


def _check_format_spec(fmt: str) -> None:
    lim = _limits().max_length
    for _, _, spec, _ in string.Formatter().parse(fmt):
        if not spec:
            continue
        if "{" in spec:
            raise LimitExceeded("render limit: nested '{}' in a format spec is not allowed")
        for number in re.findall(r"\d+", spec):
            if int(number) > lim:
                raise _too_long("a format width", int(number))


# -- the environment ------------------------------------------------------------------------------------

def _range(*args):
    lim = _limits().max_range
    rng = range(*args)
    if len(rng) > lim:
        raise LimitExceeded(f"render limit: range() of {len(rng):,} items (limit {lim:,})")
    return rng


def _loop(iterable):
    """Wraps every ``{% for %}`` iterable: each item pulled is one unit of work."""
    budget = _BUDGET.get()
    for item in iterable:
        if budget is not None:
            budget.tick()
        yield item


def _charge(size: int) -> str:
    """Put at the start of loop and macro bodies: counts their literal text towards the output limit."""
    budget = _BUDGET.get()
    if budget is not None and size:
        budget.charge(size)
    return ""


_PASSED = (Environment, Context, EvalContext)
_SIZED_ARGS = {"center": 1, "ljust": 1, "rjust": 1, "zfill": 0, "expandtabs": 0}
# filters that do not turn a whole container argument into one string
_NON_STRINGIFYING = {
    "abs", "attr", "batch", "boolean", "count", "d", "default", "dictsort", "first", "float", "groupby", "int",
    "items", "last", "length", "list", "map", "max", "min", "random", "reject", "rejectattr", "reverse", "round",
    "select", "selectattr", "slice", "sort", "sum", "unique",
}


def _precheck_filter(name: str, args, kwargs) -> None:
    data = [a for a in args if not isinstance(a, _PASSED)]  # skip a context / eval context / environment
    value = data[0] if data else None
    lim = _limits().max_length
    if name not in _NON_STRINGIFYING:
        _check_stringified(list(data) + list(kwargs.values()), f"filter '{name}'")
    if name == "format" and isinstance(value, str):
        _check_printf(value, tuple(data[1:]) or tuple(kwargs.values()))
    elif name == "center":
        width = data[1] if len(data) > 1 else kwargs.get("width", 80)
        if isinstance(width, int) and width > lim:
            raise _too_long("filter 'center'", width)
    elif name == "indent":
        width = data[1] if len(data) > 1 else kwargs.get("width", 4)
        per_line = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        text = str(value) if value is not None else ""
        _check_size("filter 'indent'", len(text) + (text.count("\n") + 1) * per_line)
    elif name == "replace" and isinstance(value, str) and len(data) >= 3:
        old, new = str(data[1]), str(data[2])
        count = value.count(old) if old else len(value) + 1
        _check_size("filter 'replace'", len(value) + count * max(0, len(new) - len(old)))
    elif name in ("batch", "slice"):
        n = data[1] if len(data) > 1 else kwargs.get("linecount", kwargs.get("slices", 0))
        if isinstance(n, int) and n > lim:
            raise _too_long(f"filter '{name}'", n)
    elif name == "wordwrap":
        for n in data[1:]:
            if isinstance(n, int) and not isinstance(n, bool) and n > lim:
                raise _too_long(f"filter '{name}'", n)


def guard_filter(name: str, func):
    """``func`` as a filter that counts as work and whose arguments and result are size-checked."""
    @functools.wraps(func)
    def guarded(*args, **kwargs):
        _tick()
        _precheck_filter(name, args, kwargs)
        return _check_result(func(*args, **kwargs), f"filter '{name}'")

    return guarded


class _Instrument(NodeTransformer):
    """Adds the loop guard and the literal-text charge to loops, macros and call blocks."""

    def visit_For(self, node: nodes.For):
        self.generic_visit(node)
        node.iter = _call("_loop", node.iter)
        node.body = [_charge_node(node.body)] + node.body
        return node

    def visit_Macro(self, node: nodes.Macro):
        self.generic_visit(node)
        node.body = [_charge_node(node.body)] + node.body
        return node

    def visit_CallBlock(self, node: nodes.CallBlock):
        self.generic_visit(node)
        node.body = [_charge_node(node.body)] + node.body
        return node

    def visit_Concat(self, node: nodes.Concat):
        self.generic_visit(node)
        return _call("_concat", nodes.List(list(node.nodes)))


def _call(func: str, *args) -> nodes.Call:
    return nodes.Call(nodes.ImportedName(f"{__name__}.{func}"), list(args), [], None, None)


def _literal_size(body) -> int:
    size = 0
    for child in body:
        if isinstance(child, nodes.Output):
            for item in child.nodes:
                if isinstance(item, nodes.TemplateData):
                    size += len(item.data)
                elif isinstance(item, nodes.Const):
                    size += len(str(item.value))
        elif isinstance(child, (nodes.If,)):
            size += _literal_size(child.body) + sum(_literal_size(e.body) for e in child.elif_) \
                + _literal_size(child.else_)
    return size


def _charge_node(body) -> nodes.Output:
    return nodes.Output([_call("_charge", nodes.Const(_literal_size(body)))])


def _concat(parts) -> str:
    cap = _limits().max_length
    size = 0
    for p in parts:
        size += estimate(p, cap)
        if size > cap:
            raise _too_long("'~' concatenation", size)
    return "".join(str(p) for p in parts)


def _finalize(value):
    budget = _BUDGET.get()
    if budget is not None and value is not None:
        budget.charge(estimate(value, budget.limits.max_length + 1))
    return value


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """``ImmutableSandboxedEnvironment`` that enforces the :class:`Limits` of the current :func:`budget`."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options):
        options.setdefault("undefined", StrictUndefined)
        options.setdefault("autoescape", False)
        options.setdefault("finalize", _finalize)
        super().__init__(**options)
        self.globals["range"] = _range
        self.globals.pop("lipsum", None)  # lipsum(n=10**7) would build gigabytes; nothing here needs it
        self.filters = {name: guard_filter(name, f) for name, f in self.filters.items()}

    def _generate(self, source, name, filename, defer_init=False):
        return super()._generate(_Instrument().visit(source), name, filename, defer_init)

    def call_binop(self, context, operator, left, right):
        _tick()
        lim = _limits()
        if operator == "*":
            seq, n = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(seq, (str, list, tuple, bytes)) and isinstance(n, int):
                _check_size("repetition", len(seq) * max(0, n))
            elif isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > lim.max_int_bits:
                    raise LimitExceeded(f"render limit: an integer product over {lim.max_int_bits:,} bits")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                if left.bit_length() * right > lim.max_int_bits:
                    raise LimitExceeded(f"render limit: {left} ** {right} is over {lim.max_int_bits:,} bits")
        elif operator == "%" and isinstance(left, str):
            _check_printf(left, right)
        elif operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            _check_size("'+'", len(left) + len(right))
        return _check_result(super().call_binop(context, operator, left, right), f"'{operator}'")

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - mirrors SandboxedEnvironment.call
        _tick(4 if isinstance(__obj, Macro) else 1)
        if isinstance(__obj, LoopContext) and args:  # a recursive loop's loop(children)
            args = (_loop(args[0]),) + args[1:]
        target = getattr(__obj, "__wrapped__", __obj)
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str):
            name = getattr(target, "__name__", "")
            lim = _limits().max_length
            if name in ("format", "format_map"):
                _check_format_spec(owner)
                _check_stringified(list(args) + list(kwargs.values()), "str.format")
            elif name in _SIZED_ARGS and len(args) > _SIZED_ARGS[name] - 1 and args:
                width = args[0]
                factor = owner.count("\t") + 1 if name == "expandtabs" else 1
                if isinstance(width, int) and width * factor > lim:
                    raise _too_long(f"str.{name}", width * factor)
            elif name == "replace" and len(args) >= 2:
                old, new = str(args[0]), str(args[1])
                count = owner.count(old) if old else len(owner) + 1
                _check_size("str.replace", len(owner) + count * max(0, len(new) - len(old)))
            elif name == "join" and args:
                _check_size("str.join", estimate(args[0], lim + 1) + len(owner) * _len(args[0]))
        result = super().call(__context, __obj, *args, **kwargs)
        return _check_result(result, "a call")


def _len(value) -> int:
    try:
        return len(value)
    except TypeError:
        return 0


ENV = LimitedSandbox()  # stateless after construction: safe to share between threads


# -- data and literal text -----------------------------------------------------------------------------

class Rendered(str):
    """A string built from literal workflow text and data; ``parts`` is ``((text, is_data), ...)``.

    A plain ``str`` handed to :func:`render_template` is all template; a ``Rendered`` one is a template only
    in its literal parts.
    """

    parts: tuple[tuple[str, bool], ...]

    def __new__(cls, parts):
        parts = tuple((str(text), bool(is_data)) for text, is_data in parts)
        self = super().__new__(cls, "".join(text for text, _ in parts))
        self.parts = parts
        return self

    @classmethod
    def data(cls, value: str) -> Rendered:
        return value if isinstance(value, Rendered) else cls([(value, True)])

    def __reduce__(self):
        return (Rendered, (self.parts,))


_DATA_VAR = "pixelmill_data_"


def split_template(text: str) -> tuple[str, dict[str, str]]:
    """The jinja source of ``text`` (data parts replaced by variables) and those variables' values."""
    if not isinstance(text, Rendered):
        return text, {}
    source, values = [], {}
    for text_part, is_data in text.parts:
        if is_data:
            name = f"{_DATA_VAR}{len(values)}"
            values[name] = text_part
            source.append("{{ " + name + " }}")
        else:
            source.append(text_part)
    return "".join(source), values


@functools.lru_cache(maxsize=256)
def compile_template(source: str):
    """Compiled templates are reused: compiling costs far more than rendering."""
    return ENV.from_string(source)


def render_template(text: str, variables: dict, *, limits: Limits | None = None, check=None) -> str:
    """Render ``text`` as a jinja2 template in the limited sandbox; data parts of a :class:`Rendered` text are
    inserted as values, never parsed. ``check`` is called every 128 units of work (it may raise)."""
    limits = limits or DEFAULT_LIMITS
    source, data = split_template(text)
    template = compile_template(source)
    with budget(limits, check):
        out = template.render(**variables, **data)
    if len(out) > limits.max_length:
        raise _too_long("the rendered text", len(out))
    return out
