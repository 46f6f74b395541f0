"""Message templates: jinja2 in a sandbox, variables from the step's inputs; a result is never rendered again."""

from __future__ import annotations

import functools

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


@functools.lru_cache(maxsize=256)
def _compiled(text: str):
    return _ENV.from_string(text)


def render(text: str, variables: dict, *, what: str) -> str:
    try:
        return _compiled(text).render(**variables)
    except TemplateError as exc:
        raise ValueError(f"{what} template: {exc}") from None


def syntax_error(text: str) -> str | None:
    try:
        _ENV.parse(text)
    except TemplateError as exc:
        return str(exc)
    return None
