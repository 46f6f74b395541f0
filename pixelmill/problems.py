"""Problems found in a workflow file, reported all at once as ``file:line:col: message``.

A problem is an error (the workflow is not loaded) or a warning (it loads, but something will likely go
wrong when it runs: a secret missing from the environment, a template variable with no value).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_MESSAGE = 400  # characters of one message; echoed values are shortened before that


def shorten(value, limit: int = 60) -> str:
    """``repr``-like text of a value, cut in the middle when long (a 5 MB value is never echoed whole)."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return text
    keep = max(8, (limit - 5) // 2)
    return f"{text[:keep]}[...]{text[-keep:]}"


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    col: int
    message: str
    hint: str = ""
    level: str = "error"  # or "warning"

    def __post_init__(self) -> None:
        if len(self.message) > MAX_MESSAGE:  # a safety net: messages echo values in many places
            object.__setattr__(self, "message", shorten(self.message, MAX_MESSAGE))
        if len(self.hint) > MAX_MESSAGE:
            object.__setattr__(self, "hint", shorten(self.hint, MAX_MESSAGE))

    @property
    def is_warning(self) -> bool:
        return self.level == "warning"

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.col}: {'warning: ' if self.is_warning else ''}{self.message}"
        return f"{text} ({self.hint})" if self.hint else text

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "col": self.col, "message": self.message, "hint": self.hint,
                "level": self.level}


class WorkflowInvalid(Exception):
    """A workflow failed validation; ``problems`` lists every error found, ``warnings`` the warnings."""

    def __init__(self, problems: list[Problem], warnings: list[Problem] | None = None):
        self.problems = sorted(problems)
        self.warnings = sorted(warnings or [])
        super().__init__("\n".join(str(p) for p in self.problems))


def did_you_mean(word: str, choices) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""
