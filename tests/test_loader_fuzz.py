"""A hypothesis fuzz test of the loader: whatever the text, only positioned problems (or a loaded
workflow), never another exception, and bounded memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pixelmill.loader import LoadedWorkflow, load_text
from pixelmill.problems import WorkflowInvalid
from pixelmill.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [p.read_text() for p in sorted((ROOT / "workflows").glob("*.yaml"))]
REGISTRY = Registry.from_entry_points()  # read-only here: shared by every example
MAX_PEAK = 80e6  # bytes a single validation may allocate at its peak

NOISE = list("[]{}&*!|>'\"#:-,?%@`\n\t \\$") + ["\x00", "\x08", "\ufeff", "é", "${{", "}}", "{{", "!!python/name:os.system ",
                                                "&a ", "*a", "<<: *a", ".nan", ".inf", "4.0e+38", "~", "null", "yes"]

expression_text = st.text(alphabet=list("()[]{}+-*/%.~|'\" 0123456789abcstepinuoxrd_"), max_size=60)
token = st.one_of(st.sampled_from(NOISE), st.text(max_size=8),
                  expression_text.map(lambda e: "${{ " + e + " }}"))


@st.composite
def mutated_example(draw):
    text = draw(st.sampled_from(EXAMPLES))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "repeat"]))
        if op == "insert":
            text = text[:at] + draw(token) + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        else:
            end = min(len(text), at + draw(st.integers(1, 80)))
            text = text[:end] + text[at:end] * draw(st.integers(1, 4)) + text[end:]
    return text


@st.composite
def alias_tree(draw):
    """Anchors and aliases of random width and depth, sometimes recursive, around a valid workflow."""
    levels, width = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    lines = ["name: fuzz", "steps: [{id: s, node: prompt, with: {template: x}}]", "x:", "  a0: &a0 [v, v]"]
    for i in range(1, levels):
        lines.append(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    if draw(st.booleans()):
        lines.append(f"  r: &r {{k: *r, n: [{'[' * draw(st.integers(0, 200))}]}}")
    return "\n".join(lines) + "\n"


nested = st.integers(1, 400).map(lambda n: "name: n\nsteps: " + "[" * n + "]" * n + "\n")
documents = st.one_of(mutated_example(), mutated_example(), mutated_example(), alias_tree(), nested,
                      st.text(max_size=300))


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=documents)
def test_loader_gives_positioned_problems_only(text):
    tracemalloc.start()
    try:
        result = load_text(text, "fuzz.yaml", REGISTRY, environ={})
    except WorkflowInvalid as exc:
        result = exc
    except BaseException as exc:  # noqa: BLE001 - the point of the test
        pytest.fail(f"{type(exc).__name__}: {exc!s:.300} for {text[:300]!r}")
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < MAX_PEAK, f"validation peaked at {peak / 1e6:.0f} MB for {text[:200]!r}"
    if isinstance(result, LoadedWorkflow):
        problems = result.warnings
    else:
        problems = result.problems + result.warnings
        assert result.problems, "invalid without a reason"
    lines = text.count("\n") + 2
    for p in problems:
        assert p.file == "fuzz.yaml" and 1 <= p.line <= lines and p.col >= 1 and p.message, p
        assert "internal error" not in p.message, p
        assert len(str(p)) < 1200, str(p)[:300]
