"""The repair loop: ask, validate against the schema, and ask again with the validation error appended."""

from __future__ import annotations

from collections.abc import Callable

from .errors import SchemaNotMet
from .result import Completion
from .structured import parse_and_validate, repair_message


def complete_with_schema(call: Callable[[list[dict]], Completion], messages: list[dict], schema: dict,
                         max_repairs: int = 2) -> Completion:
    """``call(messages)`` makes one completion; returns the first answer that validates (``.json`` set)."""
    msgs = list(messages)
    usage = None
    reason = ""
    text = ""
    for attempt in range(1, max_repairs + 2):
        done = call(msgs)
        usage = done.usage if usage is None else usage.add(done.usage)
        text = done.text
        value, reason = parse_and_validate(text, schema)
        if reason is None:
            done.json, done.usage, done.attempts = value, usage, attempt
            return done
        msgs = [*msgs, {"role": "assistant", "content": text}, {"role": "user", "content": repair_message(reason)}]
    raise SchemaNotMet(f"the model's answer did not match the JSON Schema after {max_repairs} repair attempt(s): "
                       f"{reason}; last answer: {text[:200]!r}")
