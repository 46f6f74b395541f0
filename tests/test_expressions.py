"""``${{ }}`` expressions: results are plain data (never templates), rendering has resource limits."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from pixelmill import expressions as ex
from pixelmill.loader import load_text
from pixelmill.sandbox import Rendered, split_template

from .conftest import dedent

CTX = {"inputs": {"s": "{{ 7*7 }}", "n": 3, "items": ["a", "b"]}, "secrets": {}, "now": dt.datetime(2026, 1, 2)}


def render(text, ctx=CTX):
    return ex.render(text, ctx)


def test_results_are_marked_as_data():
    mixed = render("topic: ${{ inputs.s }}!")
    assert mixed == "topic: {{ 7*7 }}!" and isinstance(mixed, Rendered)
    assert mixed.parts == (("topic: ", False), ("{{ 7*7 }}", True), ("!", False))
    whole = render("${{ inputs.s }}")
    assert isinstance(whole, Rendered) and whole.parts == (("{{ 7*7 }}", True),)
    source, data = split_template(mixed)
    assert "7*7" not in source and list(data.values()) == ["{{ 7*7 }}"]
    assert render("no expression") == "no expression" and not isinstance(render("plain"), Rendered)


def test_results_are_plain_data():
    assert render("${{ inputs.n * 2 }}") == 6
    assert render("${{ (1, 2) }}") == [1, 2]
    assert render("${{ now }}") == "2026-01-02T00:00:00"
    assert render("${{ {1: 'x'} }}") == {"1": "x"}
    assert render("${{ inputs['items'] | map('upper') }}") == ["A", "B"]
    with pytest.raises(ex.ExpressionError, match="undefined"):
        render("${{ [1, {}.missing] }}")
    with pytest.raises(ex.ExpressionError, match="undefined"):
        render("${{ {'a': [{}.missing]} }}")
    with pytest.raises(ex.ExpressionError, match="not data"):
        render("${{ namespace() }}")


@pytest.mark.parametrize("expr, message", [
    ("'a' * 10**9", "repetition would have 1,000,000,000"),
    ("[0] * 10**8", "repetition would have 100,000,000"),
    ("'%999999999s' | format(1)", "format width"),
    ("'%*s' % (999999999, 1)", "'*' widths"),
    ("'{:999999999}'.format(1)", "format width"),
    ("'x'.ljust(10**9)", "str.ljust"),
    ("'x' | center(10**9)", "filter 'center'"),
    ("range(10**8) | list", "range()"),
    ("10 ** 100000", "bits"),
    ("('ab' * 500000) ~ ('ab' * 500000)", "concatenation"),
    ("(['x' * 900000] * 100) | join", "filter 'join'"),
    ("(['x' * 900000] * 100) | string", "filter 'string'"),
    ("('a' * 1000) | replace('a', 'b' * 10000)", "filter 'replace'"),
])
def test_limits(expr, message):
    t0 = time.monotonic()
    with pytest.raises(ex.ExpressionError, match="render limit") as exc:
        render("${{ " + expr + " }}")
    assert message in str(exc.value)
    assert time.monotonic() - t0 < 1


def test_limits_fail_the_step_naming_it(runtime):
    wf = load_text(dedent("""
        name: wf
        steps:
          - {id: big, node: t_echo, with: {value: "${{ 'a' * 10**9 }}"}}
        """), "wf.yaml", runtime.registry)
    result = runtime.run(wf)
    assert result.status.value == "failed" and result.error["step_id"] == "big"
    assert result.error["message"].startswith("step 'big' (t_echo) failed: expression")
    assert "render limit: repetition" in result.error["message"]


def test_a_large_input_passes_through_untouched():
    big = "x" * 3_000_000  # over the limit, but a plain lookup builds nothing
    assert render("${{ inputs.big }}", {"inputs": {"big": big}}) == big


def test_failing_expression_on_a_secret_hides_details():
    ctx = {"secrets": {"T": "hunter2-secret"}}
    with pytest.raises(ex.ExpressionError) as exc:
        render("${{ {}[secrets.T | upper] + 1 }}", ctx)
    assert "HUNTER2" not in str(exc.value) and "details hidden" in str(exc.value)
    seen = []
    assert ex.render("x ${{ secrets.T | upper }}", ctx, seen.append) == "x HUNTER2-SECRET"
    assert seen == ["HUNTER2-SECRET"]
