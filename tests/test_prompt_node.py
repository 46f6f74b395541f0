"""The prompt node: templates, seeded choices (recorded), date variables."""

from __future__ import annotations

import datetime as dt

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
