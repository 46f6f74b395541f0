"""for_each on a step: order, parallelism cap, failure policy, per-item retry and cache, validation, resume."""

from __future__ import annotations

import time

import pytest

from pixelmill.events import EventKind
from pixelmill.loader import load_text
from pixelmill.node import Model, Node
from pixelmill.problems import WorkflowInvalid
from pixelmill.status import RunStatus, StepStatus

from .conftest import dedent
from .testnodes import CALLS


class PickInputs(Model):
    value: object = None
    fail_on: list = []


class PickOutputs(Model):
    value: object = None
    doubled: object = None


class Pick(Node):
    """Echo a value (and twice it); fail for the values in ``fail_on``."""

    type = "t_pick"
    Inputs = PickInputs
    Outputs = PickOutputs

    def run(self, inputs, ctx):
        CALLS.add(("pick", ctx.step_id, inputs.value, time.monotonic()))
        time.sleep(0.01 * (3 - int(inputs.value)) if isinstance(inputs.value, int) and inputs.value < 3 else 0)
        if inputs.value in inputs.fail_on:
            raise RuntimeError(f"no {inputs.value}")
        return PickOutputs(value=inputs.value, doubled=inputs.value * 2)


@pytest.fixture(autouse=True)
def _setup(registry):
    CALLS.clear()
    registry.register(Pick)


def load(runtime, text):
    return load_text(dedent(text), "wf.yaml", runtime.registry)


def run(runtime, text, inputs=None):
    return runtime.run(load(runtime, text), inputs)


def test_items_run_and_outputs_are_lists_in_input_order_used_downstream(runtime):
    result = run(runtime, """
        name: wf
        inputs: {xs: {type: list, default: [0, 1, 2, 3]}}
        steps:
          - id: each
            node: t_pick
            for_each: ${{ inputs.xs }}
            max_parallel: 4
            with: {value: "${{ item }}", fail_on: []}
          - id: label
            node: t_echo
            for_each: ${{ steps.each.outputs.doubled }}
            with: {value: "${{ index }}:${{ item }}"}
          - id: total
            node: t_echo
            with: {value: "${{ steps.each.outputs.value | sum }}"}
        outputs: {labels: "${{ steps.label.outputs.value }}"}
        """)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.steps["each"].outputs == {"value": [0, 1, 2, 3], "doubled": [0, 2, 4, 6]}
    assert result.outputs == {"labels": ["0:0", "1:2", "2:4", "3:6"]}
    assert result.steps["total"].outputs == {"value": 6}
    # item 0 sleeps longest, so they finished out of order: the lists still follow the input order
    finished = [c[2] for c in sorted((c for c in CALLS.items if c[0] == "pick"), key=lambda c: c[3])]
    assert sorted(finished) == [0, 1, 2, 3]
    events = runtime.store.events(result.run_id)
    item_rows = [e.step_id for e in events if e.kind is EventKind.STEP_FINISHED and e.data.get("item_of") == "each"]
    assert sorted(item_rows) == ["each[0]", "each[1]", "each[2]", "each[3]"]
    progress = [e.data for e in events if e.kind is EventKind.STEP_PROGRESS and e.step_id == "each"]
    assert progress[0]["value"] >= 1 and max(p["value"] for p in progress) == 4  # throttled, the last one always
    assert all(p["total"] == 4 for p in progress)


def test_max_parallel_caps_measured_concurrency(runtime):
    result = run(runtime, """
        name: wf
        inputs: {xs: {type: list, default: [1, 2, 3, 4, 5, 6]}}
        steps:
          - id: nap
            node: t_sleep
            for_each: ${{ inputs.xs }}
            max_parallel: 2
            with: {seconds: 0.15}
        """)
    assert result.status is RunStatus.SUCCEEDED, result.error
    spans = [(c[2], c[3]) for c in CALLS.items if c[0] == "sleep"]
    assert len(spans) == 6
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda p: (p[0], p[1]))
    now = peak = 0
    for _, d in points:
        now += d
        peak = max(peak, now)
    assert peak == 2  # two at a time: not one (serial), never three
    assert len(result.steps["nap"].outputs["started"]) == 6


def test_each_item_is_retried_on_its_own(runtime):
    result = run(runtime, """
        name: wf
        steps:
          - id: f
            node: t_flaky
            config: {fail_times: 1}
            retry: {max_attempts: 2, delay: 0}
            for_each: ${{ [1, 2, 3] }}
            max_parallel: 3
        """)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.steps["f"].outputs == {"attempt": [2, 2, 2]}
    assert len([c for c in CALLS.items if c[0] == "flaky"]) == 6
    retried = [e.step_id for e in runtime.store.events(result.run_id) if e.kind is EventKind.STEP_RETRYING]
    assert sorted(retried) == ["f[0]", "f[1]", "f[2]"]


def test_stop_fails_the_step_at_the_first_failed_item(runtime):
    result = run(runtime, """
        name: wf
        steps:
          - id: each
            node: t_pick
            for_each: ${{ [5, 6, 7, 8] }}
            with: {value: "${{ item }}", fail_on: [6]}
          - {id: after, node: t_echo, with: {value: "${{ steps.each.outputs.value }}"}}
        """)
    assert result.status is RunStatus.FAILED
    assert result.steps["each"].status is StepStatus.FAILED
    assert "item 1 of 4 failed" in result.error["message"] and "no 6" in result.error["message"]
    assert [c[2] for c in CALLS.items if c[0] == "pick"] == [5, 6]  # items 7 and 8 never started
    assert result.steps["after"].status is not StepStatus.SUCCEEDED


def test_continue_runs_every_item_and_leaves_null_for_failed_ones(runtime):
    result = run(runtime, """
        name: wf
        steps:
          - id: each
            node: t_pick
            for_each: ${{ [5, 6, 7] }}
            on_item_error: continue
            with: {value: "${{ item }}", fail_on: [6]}
        """)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.steps["each"].outputs == {"value": [5, None, 7], "doubled": [10, None, 14]}
    finished = [e.data for e in runtime.store.events(result.run_id)
                if e.kind is EventKind.STEP_FINISHED and e.step_id == "each"]
    assert finished[0]["failed_items"] == [1]


def test_items_are_cached_one_by_one(runtime):
    text = """
        name: wf
        inputs: {xs: {type: list, default: [1, 2]}}
        steps:
          - {id: e, node: t_echo, for_each: "${{ inputs.xs }}", with: {value: "${{ item }}"}}
        """
    run(runtime, text)
    CALLS.clear()
    result = run(runtime, text, {"xs": [1, 2, 3]})
    assert result.steps["e"].outputs == {"value": [1, 2, 3]}
    assert [c[2] for c in CALLS.items] == [3]  # 1 and 2 came from the cache


def test_a_for_each_value_that_is_not_a_list_fails_the_step_clearly(runtime):
    result = run(runtime, """
        name: wf
        inputs: {xs: {type: string, default: abc}}
        steps:
          - {id: e, node: t_echo, for_each: "${{ inputs.xs }}", with: {value: "${{ item }}"}}
        """)
    assert result.status is RunStatus.FAILED
    assert "for_each must give a list, it gave a str" in result.error["message"]


def test_empty_list_gives_empty_outputs(runtime):
    result = run(runtime, """
        name: wf
        steps:
          - {id: e, node: t_echo, for_each: "${{ [] }}", with: {value: "${{ item }}"}}
        """)
    assert result.status is RunStatus.SUCCEEDED and result.steps["e"].outputs == {"value": []}


def test_validation_reports_item_misuse_with_positions(runtime):
    with pytest.raises(WorkflowInvalid) as err:
        load(runtime, """
            name: wf
            steps:
              - id: a
                node: t_echo
                with: {value: "${{ item }}"}
              - id: b
                node: t_echo
                for_each: "items: ${{ [1] }}"
              - id: c
                node: t_echo
                max_parallel: 2
              - id: d
                node: t_pick
                for_each: ${{ [1, 2] }}
                if: ${{ index > 0 }}
                with: {value: "${{ item }}"}
              - id: e
                node: t_echo
                with: {value: "${{ steps.d.outputs.value.name }}"}
            outputs: {x: "${{ index }}"}
            """)
    found = {(p.line, p.col, p.message) for p in err.value.problems}
    text = "\n".join(f"{p.line}:{p.col} {p.message}" for p in sorted(err.value.problems))
    assert any(line == 5 and "'item' is only available" in m for line, _, m in found), text
    assert any(line == 8 and "'for_each' must be one expression" in m for line, _, m in found), text
    assert any(line == 11 and "'max_parallel' only applies" in m for line, _, m in found), text
    assert any(line == 15 and "'index' is only available" in m for line, _, m in found), text
    assert any(line == 19 and "outputs.value' is a list" in m for line, _, m in found), text
    assert any(line == 20 and "'index' is only available" in m for line, _, m in found), text
    assert all(p.file == "wf.yaml" and p.col >= 1 for p in err.value.problems)


def test_resume_keeps_items_that_finished_before_a_crash(runtime):
    wf = load(runtime, """
        name: wf
        steps:
          - id: each
            node: t_pick
            for_each: ${{ [1, 2, 3] }}
            cache: false
            with: {value: "${{ item }}"}
        """)
    store = runtime.store
    run_id = store.create_run("wf", inputs={})
    # the process died after item 1 finished: its row is stored, the step's own row is still running
    from pixelmill.events import Event  # noqa: PLC0415
    store.record(Event(EventKind.STEP_STARTED, run_id, "each", {"node": "t_pick", "attempt": 1}))
    store.record(Event(EventKind.STEP_STARTED, run_id, "each[1]", {"node": "t_pick", "attempt": 1}))
    store.record(Event(EventKind.STEP_FINISHED, run_id, "each[1]", {
        "status": "succeeded", "outputs": {"value": 2, "doubled": 4}, "attempts": 1, "duration_s": 0.1}))
    result = runtime.executor.execute(wf, run_id, inputs={})
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.steps["each"].outputs == {"value": [1, 2, 3], "doubled": [2, 4, 6]}
    assert sorted(c[2] for c in CALLS.items if c[0] == "pick") == [1, 3]  # item 1 was not run again


def test_resume_keeps_the_artifacts_of_finished_items_and_redoes_the_others(runtime, registry):
    from pixelmill.events import Event  # noqa: PLC0415

    from .imagenodes import MakeImage  # noqa: PLC0415

    registry.register(MakeImage)
    wf = load(runtime, """
        name: wf
        steps:
          - id: img
            node: t_make_image
            for_each: ${{ ['#ff0000', '#00ff00'] }}
            cache: false
            with: {color: "${{ item }}"}
        """)
    store = runtime.store
    run_id = store.create_run("wf", inputs={})
    folder = store.artifacts_root / run_id
    folder.mkdir(parents=True)
    (folder / "img-0-made.png").write_bytes(b"kept")  # item 0 finished before the crash
    (folder / "img-1-made.png").write_bytes(b"partial")  # item 1 was being written
    ref0 = {"kind": "artifact", "run_id": run_id, "name": "img-0-made.png", "media_type": "image/png"}
    store.record(Event(EventKind.STEP_STARTED, run_id, "img", {"node": "t_make_image", "attempt": 1}))
    store.record(Event(EventKind.STEP_STARTED, run_id, "img[0]", {"node": "t_make_image", "attempt": 1}))
    store.record(Event(EventKind.STEP_FINISHED, run_id, "img[0]", {
        "status": "succeeded", "outputs": {"image": ref0}, "attempts": 1, "duration_s": 0.1}))
    result = runtime.executor.execute(wf, run_id, inputs={})
    assert result.status is RunStatus.SUCCEEDED, result.error
    names = [r["name"] for r in result.steps["img"].outputs["image"]]
    assert names == ["img-0-made.png", "img-1-made.png"]
    assert (folder / "img-0-made.png").read_bytes() == b"kept"
    assert (folder / "img-1-made.png").read_bytes()[:4] == b"\x89PNG"  # written again, not the partial file


def test_cancelling_the_run_stops_items_that_have_not_started(runtime):
    import threading  # noqa: PLC0415

    wf = load(runtime, """
        name: wf
        steps:
          - id: nap
            node: t_sleep
            for_each: ${{ [1, 2, 3, 4, 5] }}
            with: {seconds: 0.2}
        """)
    run_id = runtime.store.create_run("wf", inputs={})
    timer = threading.Timer(0.3, lambda: runtime.executor.cancel(run_id))
    timer.start()
    result = runtime.executor.execute(wf, run_id, inputs={})
    timer.join()
    assert result.status is RunStatus.CANCELLED
    assert result.steps["nap"].status is StepStatus.CANCELLED
    assert len([c for c in CALLS.items if c[0] == "sleep"]) < 5
