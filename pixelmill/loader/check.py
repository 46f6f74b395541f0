"""Collecting what is wrong with one workflow file: every error and warning, each at its ``file:line:col``.

The checks of the other loader modules add to one ``Check`` instead of raising, so a file's problems are
all reported at once; ``load.py`` raises ``WorkflowInvalid`` with them at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..problems import Problem
from ..registry import Registry
from ..yamlsource import Located


@dataclass
class Check:
    located: Located
    registry: Registry
    problems: list[Problem] = field(default_factory=list)

    environ: object = None
    warnings: list[Problem] = field(default_factory=list)

    def add(self, path, message, hint="", key=False):
        self.problems.append(self.located.problem(path, message, hint, key=key))

    def warn(self, path, message, hint=""):
        self.warnings.append(self.located.problem(path, message, hint, level="warning"))

    def secret(self, path, name) -> None:
        if isinstance(name, str) and name and not self.environ.get(name):
            self.warn(path, f"secret '{name}' is not set in the environment",
                      f"export {name} before 'pixelmill serve' or 'run'; runs that use it fail until then")
