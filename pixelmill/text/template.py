"""Message templates: jinja2 in a sandbox, variables from the step's inputs; a result is never rendered again.

A template that is only text and plain ``{{ name }}`` substitutions whose names are all in the variables is
filled without building a jinja2 render context (what jinja2 does for it: ``str()`` of each value between the
parsed text pieces); anything else, and every error, goes through the sandboxed jinja2 render.
"""

from __future__ import annotations

import functools

from jinja2 import StrictUndefined, TemplateError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_SPECIAL = frozenset({"self", "loop", "super", "caller", "varargs", "kwargs"})  # names jinja2 binds itself


@functools.lru_cache(maxsize=256)
def _compiled(text: str):
    return _ENV.from_string(text)


@functools.lru_cache(maxsize=256)
def _pieces(text: str) -> tuple[tuple[str, bool], ...] | None:
    """(literal text, False) and (variable name, True) in order, when the template is only those; else None."""
    try:
        tree = _ENV.parse(text)  # the lexer's text: newlines normalised, the trailing one dropped, {{- -}} applied
    except TemplateError:
        return None
    out = []
    for node in tree.body:
        if not isinstance(node, nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                out.append((child.data, False))
            elif isinstance(child, nodes.Name) and child.ctx == "load" and child.name not in _SPECIAL:
                out.append((child.name, True))
            else:
                return None
    return tuple(out)


def render(text: str, variables: dict, *, what: str) -> str:
    pieces = _pieces(text)
    if pieces is not None:
        out = []
        for piece, is_name in pieces:
            if is_name:
                if piece not in variables:
                    break  # undefined, or one of jinja2's globals: jinja2 resolves it or says which
                piece = str(variables[piece])  # what jinja2's generated code does for {{ name }}
            out.append(piece)
        else:
            return "".join(out)
    try:
        return _compiled(text).render(variables)  # a dict, so a variable may be called "self"
    except TemplateError as exc:
        raise ValueError(f"{what} template: {exc}") from None


def syntax_error(text: str) -> str | None:
    try:
        _ENV.parse(text)
    except TemplateError as exc:
        return str(exc)
    return None
