"""How ``pixelmill nodes`` describes a node type: summary, config, inputs and outputs, in plain text."""

from __future__ import annotations

import inspect
import json
import re
import types
import typing

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`(\"'])")


def _plain(text: str) -> str:
    return text.replace("``", "`")


def description(cls) -> str:
    return _plain(inspect.cleandoc(cls.__doc__ or "")).strip()


def summary(cls) -> str:
    """The docstring's first sentence, whole, even when it spans several lines."""
    first_paragraph = description(cls).split("\n\n")[0]
    text = " ".join(first_paragraph.split())
    return _SENTENCE_END.split(text, maxsplit=1)[0] if text else "(no description)"


def type_name(annotation) -> str:
    """A field's type as a workflow author reads it: `int`, `str | None`, `list[ArtifactRef]`, `auto | cpu`."""
    if annotation is None or annotation is type(None):
        return "None"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(str(a) for a in args)
    if origin is typing.Union or type(annotation) is types.UnionType:
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None and args:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
    if isinstance(annotation, type):
        return annotation.__name__
    return re.sub(r"\b(?:typing|pixelmill(?:_nodes)?(?:\.\w+)*)\.", "", str(annotation))


def _default(field) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:  # a factory that needs the validated data
            return "default computed"
    else:
        value = field.default
    return "default " + json.dumps(value, default=str, ensure_ascii=False)


def field_names(model) -> str:
    return ", ".join(model.model_fields) or "-"


def field_lines(model, indent: str = "  ", with_defaults: bool = True) -> list[str]:
    fields = model.model_fields
    if not fields:
        return [f"{indent}(none)"]
    rows = []
    for name, f in fields.items():
        parts = [type_name(f.annotation)]
        if with_defaults:
            parts.append(_default(f))
        rows.append((name, ", ".join(parts), " ".join((f.description or "").split())))
    w_name = max(len(r[0]) for r in rows)
    w_type = max(len(r[1]) for r in rows)
    return [f"{indent}{n:<{w_name}}  {t:<{w_type}}  {d}".rstrip() for n, t, d in rows]


def flags(info) -> str:
    out = ["gpu"] if info.cls.uses_gpu else []
    if info.cls.deterministic:
        out.append("deterministic (outputs cached)")
    return "  " + ", ".join(out) if out else ""


def brief(info) -> list[str]:
    cls = info.cls
    return [f"{info.type}@{info.version}  [{info.source}]{'  gpu' if cls.uses_gpu else ''}",
            f"    {summary(cls)}",
            f"    inputs:  {field_names(cls.Inputs)}",
            f"    outputs: {field_names(cls.Outputs)}",
            f"    config:  {field_names(cls.Config)}"]


def details(info) -> list[str]:
    cls = info.cls
    lines = [f"{info.type}@{info.version}  [{info.source}]{flags(info)}", ""]
    lines += [f"  {line}".rstrip() for line in description(cls).splitlines() or ["(no description)"]]
    lines += ["", "config (literal values under `config:`)", *field_lines(cls.Config),
              "", "inputs (literals or ${{ }} expressions under `with:`)", *field_lines(cls.Inputs),
              "", "outputs (steps.<id>.outputs.<name>)", *field_lines(cls.Outputs, with_defaults=False)]
    return lines
