"""Engine fixes made while building the server (each was found by a server test or the fuzzer)."""

from __future__ import annotations

import time

import pytest

from pixelmill.loader import load_text
from pixelmill.problems import WorkflowInvalid
from pixelmill.registry import Registry
from pixelmill.store import RunStore

WF = """name: x
steps:
  - id: a
    node: prompt
    with: {template: "${{ inputs.s }}"}
inputs: {s: {type: string, default: hi}}
outputs: {t: "${{ steps.a.outputs.text }}"}
"""


@pytest.fixture(scope="module")
def registry():
    return Registry.from_entry_points()


def test_loaded_workflow_keeps_its_source_text(registry):
    assert load_text(WF, "x.yaml", registry).source == WF


def test_control_characters_are_a_problem_not_a_crash(registry):
    with pytest.raises(WorkflowInvalid) as exc:
        load_text("name: x\x08\n", "bad.yaml", registry)
    assert "bad.yaml:1:1" in str(exc.value) and "control" in str(exc.value)


def test_impossible_dates_are_a_problem_not_a_crash(registry):
    with pytest.raises(WorkflowInvalid) as exc:
        load_text("name: x\ndescription: 2024-02-30\nsteps: []\n", "d.yaml", registry)
    assert "d.yaml:2:14: cannot read this value" in str(exc.value)


def test_queued_event_time_is_utc(tmp_path):
    store = RunStore(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "runs")
    run_id = store.create_run("x", inputs={})
    ev = store.events(run_id)[0]
    assert abs(ev.ts - time.time()) < 60
    assert store.claim(run_id) and not store.claim(run_id)
    store.close()
