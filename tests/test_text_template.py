"""Message templates: the direct fill of text-and-{{ name }} templates gives what the jinja2 sandbox gives."""

from __future__ import annotations

import pytest

from pixelmill.text.template import _compiled, _pieces, render

VARS = {"topic": "the sea", "n": 3, "x": 0.5, "flag": True, "nothing": None, "items": ["a", 1],
        "obj": {"k": "v"}, "html": "<b>&</b>", "braces": "{{ topic }}", "self": "mine"}

DIRECT = [
    "Write one line about {{ topic }}.",
    "{{ topic }}",
    "no variables at all",
    "",
    "ends with a newline\n",
    "two trailing newlines\n\n",
    "windows\r\nline\rends {{ n }}\r\n",
    "{{n}}{{x}}{{flag}}{{nothing}}{{items}}{{obj}}",
    "  {{- topic -}}  \n  {{ html }}",
    "{{ braces }} is data, never rendered again",
    "{% raw %}{{ topic }}{% endraw %} and {{ topic }}",
    "unicode: {{ topic }} ✓ ünïcödé",
]

JINJA_ONLY = [
    "{{ topic | upper }}",
    "{{ obj.k }}",
    "{{ items[0] }}",
    "{% if flag %}yes{% endif %} {{ topic }}",
    "{{ 'const' }} {{ topic }}",
    "{{ self }}",
    "{# comment #}{{ topic }}",
]


@pytest.mark.parametrize("text", DIRECT)
def test_plain_substitution_is_filled_directly_and_matches_jinja2(text):
    assert _pieces(text) is not None
    assert render(text, VARS, what="prompt") == _compiled(text).render(VARS)


@pytest.mark.parametrize("text", JINJA_ONLY)
def test_everything_else_goes_through_the_sandbox(text):
    if "{#" not in text:
        assert _pieces(text) is None
    assert render(text, VARS, what="prompt") == _compiled(text).render(VARS)


def test_a_name_not_among_the_variables_is_resolved_by_jinja2():
    assert render("{{ range }}", VARS, what="prompt") == _compiled("{{ range }}").render(VARS)  # its safe range


def test_undefined_name_is_the_jinja2_error():
    with pytest.raises(ValueError, match="prompt template: 'missing' is undefined"):
        render("about {{ missing }}", VARS, what="prompt")


def test_sandbox_still_refuses_unsafe_access():
    with pytest.raises(ValueError, match="system template:.*unsafe"):
        render("{{ topic.__class__.__mro__ }}", VARS, what="system")
