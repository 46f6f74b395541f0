"""The prompt node: templates, seeded choices (recorded), date variables."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from pixelmill.testing import check_node
from pixelmill_nodes.prompt import PromptNode

CHOICES = {"color": ["red", "green", "blue", "yellow"], "shape": ["circle", "square", "triangle", "star"]}


def test_same_seed_same_text_and_choices_recorded():
    a = check_node(PromptNode, inputs={"template": "a {{ color }} {{ shape }}", "choices": CHOICES, "seed": 42})
    b = check_node(PromptNode, inputs={"template": "a {{ color }} {{ shape }}", "choices": CHOICES, "seed": 42})
    assert a == b
    assert a.text == f"a {a.choices['color']} {a.choices['shape']}" and a.seed == 42
    texts = {check_node(PromptNode, inputs={"template": "{{ color }} {{ shape }}", "choices": CHOICES,
                                            "seed": s}).text for s in range(20)}
    assert len(texts) > 5  # different seeds explore the choices


def test_seed_drawn_and_recorded_when_absent():
    out = check_node(PromptNode, inputs={"template": "{{ color }}", "choices": CHOICES})
    again = check_node(PromptNode, inputs={"template": "{{ color }}", "choices": CHOICES, "seed": out.seed})
    assert again.text == out.text


def test_date_variables_in_timezone():
    out = check_node(PromptNode, inputs={"template": "{{ date }} {{ weekday }} {{ year }}"},
                     config={"timezone": "Pacific/Kiritimati"})
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=14))).date()
    assert out.text.startswith(today.isoformat())


def test_unknown_variable_and_empty_choice_fail_clearly():
    with pytest.raises(ValueError, match="'colour' is undefined"):
        check_node(PromptNode, inputs={"template": "{{ colour }}", "choices": CHOICES, "seed": 1})
    with pytest.raises(ValueError, match="choice list 'x' is empty"):
        check_node(PromptNode, inputs={"template": "hi", "choices": {"x": []}, "seed": 1})


def test_template_is_sandboxed():
    with pytest.raises(ValueError, match="prompt template"):
        check_node(PromptNode, inputs={"template": "{{ ''.__class__.__mro__[1].__subclasses__() }}", "seed": 1})


def test_bad_timezone_rejected_at_load():
    with pytest.raises(Exception, match="unknown timezone 'Mars/Base'"):
        PromptNode.Config.model_validate({"timezone": "Mars/Base"})


# -- issue 9: data is never code; issue 10: limits ------------------------------------------------------

def _run(runtime, text, inputs=None):
    from pixelmill.loader import load_text

    return runtime.run(load_text(text, "wf.yaml", runtime.registry), inputs)


DATA_WF = """name: wf
inputs: {topic: {type: string}}
steps:
  - id: p
    node: prompt
    with:
      template: "a {{ color }} poster about ${{ inputs.topic }}"
      vars: {color: red}
      seed: 1
  - id: whole
    node: prompt
    with: {template: "${{ inputs.topic }}", seed: 1}
outputs: {text: "${{ steps.p.outputs.text }}", whole: "${{ steps.whole.outputs.text }}"}
"""


@pytest.mark.parametrize("payload", [
    "{{ 7*7 }}",
    "{% for i in range(3) %}x{% endfor %}",
    "{{ 'a'*10**9 }}",
    "{{ color }} {% raw %}",
])
def test_expression_results_in_a_template_are_data_not_code(runtime, payload):
    result = _run(runtime, DATA_WF, {"topic": payload})
    assert result.status.value == "succeeded", result.error
    assert result.outputs["text"] == " ".join(f"a red poster about {payload}".split())
    assert result.outputs["whole"] == " ".join(payload.split())


def test_literal_template_still_renders_and_stored_inputs_are_plain(runtime):
    result = _run(runtime, DATA_WF, {"topic": "cats"})
    assert result.outputs["text"] == "a red poster about cats"
    step = runtime.store.get_run(result.run_id)["steps"][0]
    assert step["inputs"]["template"] == "a {{ color }} poster about cats"


@pytest.mark.parametrize("template, message", [
    ("{{ 'a'*10**9 }}", "repetition would have 1,000,000,000"),
    ("{{ [0]*10**8 }}", "repetition would have 100,000,000"),
    ("{{ '%999999999s'|format(1) }}", "format width"),
    ("{{ '{:>999999999}'.format(1) }}", "format width"),
    ("{{ 'x'.center(10**9) }}", "str.center"),
    ("{{ range(10**6)|length }}", "range() of 1,000,000 items"),
    ("{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}", "loop iterations"),
    ("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
     "concatenation"),
    ("{% for i in range(9000) %}" + "z" * 500 + "{% endfor %}", "output longer than"),
    ("{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(30) }}", "calls"),
    ("{{ 10 ** (10 ** 10) }}", "bits"),
    ("{% set l = ['x' * 900000] * 100 %}{{ l|join }}", "filter 'join'"),
    ("{% set ns = namespace(l=[]) %}{% for i in range(5000) %}{% set ns.l = ns.l + ['x' * 999999] %}{% endfor %}",
     "operations built more than"),
    ("{{ lipsum(10**7) }}", "undefined"),
])
def test_template_resource_limits_fail_the_step_naming_it(runtime, template, message):
    import time

    wf = f"name: wf\nsteps:\n  - id: boom\n    node: prompt\n    with: {{template: {json.dumps(template)}, seed: 1}}\n"
    _run(runtime, "name: warm\nsteps:\n  - id: p\n    node: prompt\n    with: {template: ok, seed: 1}\n")
    t0 = time.monotonic()  # after a warm-up run: node imports are not what this bounds
    result = _run(runtime, wf)
    assert time.monotonic() - t0 < 5
    assert result.status.value == "failed"
    assert result.error["step_id"] == "boom"
    assert result.error["message"].startswith("step 'boom' (prompt) failed: prompt template: ")
    assert message in result.error["message"]


def test_cancelled_render_stops_within_a_second(tmp_path, monkeypatch):
    """A CPU-bound template checks the step's cancel token while it renders."""
    import threading
    import time

    from pixelmill import sandbox
    from pixelmill.node import Cancelled
    from pixelmill.testing import make_context

    monkeypatch.setattr(sandbox, "DEFAULT_LIMITS", sandbox.Limits(max_work=10**9, max_seconds=600))
    ctx = make_context(tmp_path)
    node = PromptNode()
    inputs = PromptNode.Inputs(template="{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}"
                                        "{% endfor %}", seed=1)
    threading.Timer(0.3, ctx.cancel_event.set).start()
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        node.run(inputs, ctx)
    assert time.monotonic() - t0 < 1.3
