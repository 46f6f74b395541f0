"""Issue 9 item 29: the JSON Schema accepts every example workflow under an independent validator
(``jsonschema``), and a typo'd key is reported at that key."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from pixelmill.loader import workflow_files
from pixelmill.registry import Registry
from pixelmill.schema import workflow_schema
from pixelmill.yamlsource import load

from .conftest import dedent

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = workflow_files(ROOT / "workflows")  # calendar files (calendar.yaml) hold rows, not workflows


@pytest.fixture(scope="module")
def validator():
    schema = json.loads((ROOT / "workflows" / "pixelmill.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def data_of(text: str):
    located = load(text, "x.yaml")  # YAML 1.2 keys as editors read them ('on' stays a string)
    assert not located.problems
    return located.data


def test_there_are_examples():
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_workflow_is_valid(validator, path):
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(data_of(path.read_text()))]
    assert errors == []


TYPOS = [
    ("step key", "retries: 3", ["steps", 0], "'retries' was unexpected"),
    ("config key", "config: {timezon: UTC}", ["steps", 0, "config"], "'timezon' was unexpected"),
    ("input key", "with: {template: x, sed: 3}", ["steps", 0, "with"], "'sed' was unexpected"),
]


@pytest.mark.parametrize("line,path,message", [t[1:] for t in TYPOS], ids=[t[0] for t in TYPOS])
def test_a_typo_is_reported_at_its_key(validator, line, path, message):
    text = dedent(f"""
        name: w
        steps:
          - id: p
            node: prompt
            {line}
        """)
    if "with:" not in line:
        text += "    with: {template: x}\n"
    errors = list(validator.iter_errors(data_of(text)))
    best = jsonschema.exceptions.best_match(errors)
    assert best is not None and list(best.absolute_path) == path and message in best.message, \
        [(list(e.absolute_path), e.message) for e in errors]


def test_expressions_are_accepted_inside_lists_and_objects(validator):
    text = dedent("""
        name: w
        inputs: {n: {type: integer, default: 2}}
        steps:
          - id: p
            node: prompt
            with: {template: x, seed: "${{ inputs.n }}", choices: {c: ["${{ inputs.n }}", b]}}
          - id: post
            node: post_social
            config: {target: outbox}
            with:
              text: "t ${{ steps.p.outputs.text }}"
              images: ["${{ steps.p.outputs.text }}", {kind: artifact, run_id: "${{ run.id }}", name: a.png}]
        """)
    assert [e.message for e in validator.iter_errors(data_of(text))] == []


def test_an_unknown_node_gets_the_generic_step_shape(validator):
    ok = data_of("name: w\nsteps: [{id: a, node: someones_node, with: {anything: [1]}, config: {k: v}}]\n")
    assert list(validator.iter_errors(ok)) == []
    bad = data_of("name: w\nsteps: [{id: a, node: someones_node, retry: {max_attemps: 2}}]\n")
    best = jsonschema.exceptions.best_match(validator.iter_errors(bad))
    assert list(best.absolute_path) == ["steps", 0, "retry"] and "'max_attemps' was unexpected" in best.message


def test_committed_schema_is_current():
    committed = json.loads((ROOT / "workflows" / "pixelmill.schema.json").read_text())
    assert committed == workflow_schema(Registry.from_entry_points()), "run 'make schema'"
