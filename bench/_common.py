"""What ``bench/engine.py`` and ``bench/loader.py`` share: the checkout on ``sys.path`` (they run as
``python bench/<name>.py``), the cheapest possible node and a chain of its steps."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pixelmill.node import Model, Node  # noqa: E402


class PassInputs(Model):
    value: int = 0


class PassOutputs(Model):
    value: int


class Pass(Node):
    """Add one to a number: the cheapest possible node."""

    type = "bench_pass"
    Inputs = PassInputs
    Outputs = PassOutputs

    def run(self, inputs, ctx):
        return PassOutputs(value=inputs.value + 1)


def pass_chain(n: int, restart_every: int = 0) -> list[str]:
    """YAML lines of ``n`` ``bench_pass`` steps ``s0`` .. ``s{n-1}``, each reading the value of the one before
    (starting from 0 again every ``restart_every`` steps when that is set)."""
    lines = []
    for i in range(n):
        first = i == 0 or (restart_every and i % restart_every == 0)
        value = "0" if first else f"'${{{{ steps.s{i - 1}.outputs.value }}}}'"
        lines.append(f"  - {{id: s{i}, node: bench_pass, with: {{value: {value}}}}}")
    return lines
