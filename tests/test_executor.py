"""Executor semantics: order, overlap, GPU serialisation, retries, timeouts, conditions, on_error, cache."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest

from pixelmill.loader import load_text
from pixelmill.status import RunStatus, StepStatus

from .conftest import dedent
from .testnodes import CALLS

# every test with a run store runs against SQLite and a throwaway PostgreSQL cluster
STORE_BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(autouse=True)
def _clear_calls():
    CALLS.clear()


def run(runtime, text, inputs=None):
    wf = load_text(dedent(text), "wf.yaml", runtime.registry)
    return runtime.run(wf, inputs)


def test_steps_run_in_dependency_order_and_pass_outputs(runtime):
    result = run(runtime, """
        name: wf
        inputs: {n: {type: integer, default: 2}}
        steps:
          - id: a
            node: t_echo
            with: {value: "${{ inputs.n * 10 }}"}
          - id: c
            node: t_echo
            needs: [b]
            with: {value: last}
          - id: b
            node: t_echo
            with: {value: "${{ steps.a.outputs.value + 1 }}"}
        outputs: {text: "n=${{ steps.b.outputs.value }}", native: "${{ steps.a.outputs.value }}"}
        """)
    assert result.status is RunStatus.SUCCEEDED
    assert [c[1] for c in CALLS.items] == ["a", "b", "c"]
    assert result.outputs == {"native": 20, "text": "n=21"}  # a single expression keeps its native type
    assert result.steps["b"].outputs == {"value": 21}


def test_independent_steps_overlap_and_gpu_steps_do_not(runtime):
    result = run(runtime, """
        name: wf
        steps:
          - {id: s1, node: t_sleep, with: {seconds: 0.4}}
          - {id: s2, node: t_sleep, with: {seconds: 0.4}}
          - {id: g1, node: t_gpu_sleep, with: {seconds: 0.3}, needs: [s1, s2]}
          - {id: g2, node: t_gpu_sleep, with: {seconds: 0.3}, needs: [s1, s2]}
        """)
    assert result.status is RunStatus.SUCCEEDED
    spans = {c[1]: (c[2], c[3]) for c in CALLS.items}
    s1, s2, g1, g2 = spans["s1"], spans["s2"], spans["g1"], spans["g2"]
    assert s1[0] < s2[1] and s2[0] < s1[1], "independent CPU steps should overlap"
    assert g1[1] <= g2[0] or g2[1] <= g1[0], "GPU steps must not overlap"


def test_retry_count_and_exponential_backoff(runtime):
    result = run(runtime, """
        name: wf
        steps:
          - id: f
            node: t_flaky
            config: {fail_times: 2}
            retry: {max_attempts: 3, delay: 0.1, factor: 3}
        """)
    assert result.status is RunStatus.SUCCEEDED
    assert result.steps["f"].attempts == 3 and result.steps["f"].outputs == {"attempt": 3}
    times = [c[3] for c in CALLS.items]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert 0.1 <= gaps[0] < 0.25 and 0.3 <= gaps[1] < 0.5, gaps
    events = runtime.store.events(result.run_id)
    assert [e.data["delay_s"] for e in events if e.kind.value == "step.retrying"] == [pytest.approx(0.1),
                                                                                      pytest.approx(0.3)]


def test_retries_exhausted_fail_the_run_with_step_id(runtime):
    result = run(runtime, """
        name: wf
        steps:
          - {id: f, node: t_flaky, config: {fail_times: 5}, retry: {max_attempts: 2, delay: 0}}
          - {id: after, node: t_echo, needs: [f]}
        """)
    assert result.status is RunStatus.FAILED
    assert result.error["step_id"] == "f" and result.error["type"] == "RuntimeError"
    assert result.error["message"] == "step 'f' (t_flaky) failed: flaky failure 2"
    assert "Traceback" in result.error["traceback"]
    assert result.steps["f"].attempts == 2
    assert result.steps["after"].status is StepStatus.CANCELLED
    stored = runtime.store.get_run(result.run_id)
    assert stored["status"] == "failed" and stored["error"]["step_id"] == "f"


def test_no_retry_errors_fail_at_once(runtime):
    result = run(runtime, """
        name: wf
        steps:
          - {id: f, node: t_flaky, config: {fail_times: 5, permanent: true}, retry: {max_attempts: 4, delay: 0}}
        """)
    assert result.status is RunStatus.FAILED
    assert result.steps["f"].attempts == 1
    assert result.error["message"] == "step 'f' (t_flaky) failed: permanent failure 1"


def test_timeout_fails_step_and_stops_cooperative_node(runtime):
    t0 = time.monotonic()
    result = run(runtime, """
        name: wf
        steps:
          - {id: slow, node: t_sleep, with: {seconds: 5}, timeout: 0.3}
        """)
    assert time.monotonic() - t0 < 2
    assert result.status is RunStatus.FAILED
    assert result.error["type"] == "StepTimeout"
    assert result.error["message"] == "step 'slow' (t_sleep) failed: timed out after 0.3 s"


def test_on_error_continue_skips_dependents_but_run_succeeds(runtime):
    result = run(runtime, """
        name: wf
        steps:
          - {id: bad, node: t_flaky, config: {fail_times: 9}, on_error: continue}
          - {id: dep, node: t_echo, with: {value: "${{ steps.bad.outputs.attempt }}"}}
          - {id: free, node: t_echo, with: {value: 1}}
        outputs: {v: "${{ steps.free.outputs.value }}"}
        """)
    assert result.status is RunStatus.SUCCEEDED
    assert result.steps["bad"].status is StepStatus.FAILED
    assert result.steps["dep"].status is StepStatus.SKIPPED
    assert result.steps["free"].status is StepStatus.SUCCEEDED
    assert result.outputs == {"v": 1}


def test_conditions(runtime):
    result = run(runtime, """
        name: wf
        inputs: {go: {type: boolean, default: false}}
        steps:
          - {id: taken, node: t_echo, if: "not inputs.go", with: {value: 1}}
          - {id: skipped, node: t_echo, if: "${{ inputs.go }}", with: {value: 2}}
          - {id: after_no, node: t_echo, with: {value: "${{ steps.skipped.outputs.value }}"}}
        outputs: {a: "${{ steps.taken.outputs.value }}", b: "${{ steps.skipped.outputs.value }}"}
        """)
    assert result.status is RunStatus.SUCCEEDED
    assert result.steps["taken"].status is StepStatus.SUCCEEDED
    assert result.steps["skipped"].status is StepStatus.SKIPPED
    assert result.steps["after_no"].status is StepStatus.SKIPPED
    assert result.outputs == {"a": 1, "b": None}


CACHE_WF = """
    name: wf
    inputs: {v: {type: string, default: x}}
    steps:
      - {id: e, node: t_echo, with: {value: "${{ inputs.v }}"}}
      - {id: nocache, node: t_echo, cache: false, with: {value: "${{ inputs.v }}"}}
    """


def test_cache_hit_and_miss(runtime):
    first = run(runtime, CACHE_WF)
    second = run(runtime, CACHE_WF)
    third = run(runtime, CACHE_WF, {"v": "y"})
    assert first.steps["e"].status is StepStatus.SUCCEEDED
    assert second.steps["e"].status is StepStatus.CACHED and second.steps["e"].outputs == {"value": "x"}
    assert third.steps["e"].status is StepStatus.SUCCEEDED
    assert [c[1] for c in CALLS.items].count("e") == 2  # miss, hit, miss
    assert [c[1] for c in CALLS.items].count("nocache") == 3  # opted out: always runs
    stored = {s["step_id"]: s for s in runtime.store.get_run(second.run_id)["steps"]}
    assert stored["e"]["status"] == "cached" and stored["nocache"]["status"] == "succeeded"


def test_node_decides_per_call_whether_it_is_cacheable(runtime):
    wf = """
        name: wf
        inputs: {seed: {type: integer, default: null}}
        steps:
          - {id: s, node: t_seeded, with: {seed: "${{ inputs.seed }}"}}
        """
    assert run(runtime, wf, {"seed": 3}).steps["s"].status is StepStatus.SUCCEEDED
    assert run(runtime, wf, {"seed": 3}).steps["s"].status is StepStatus.CACHED
    unseeded = [run(runtime, wf).steps["s"] for _ in range(2)]
    assert [r.status for r in unseeded] == [StepStatus.SUCCEEDED, StepStatus.SUCCEEDED]
    assert unseeded[0].outputs != unseeded[1].outputs


def test_missing_secret_fails_run_naming_variable(runtime, monkeypatch):
    monkeypatch.delenv("PM_TEST_TOKEN", raising=False)
    result = run(runtime, """
        name: wf
        steps:
          - {id: s, node: t_secret, with: {token: "${{ secrets.PM_TEST_TOKEN }}"}}
        """)
    assert result.status is RunStatus.FAILED
    assert "PM_TEST_TOKEN" in result.error["message"]
    assert "export the environment variable PM_TEST_TOKEN" in result.error["message"]


def test_secrets_never_reach_store_or_logs(runtime, monkeypatch, caplog, tmp_path):
    secret = "s3cr3t-value-that-must-not-leak"
    monkeypatch.setenv("PM_TEST_TOKEN", secret)
    caplog.set_level(logging.DEBUG)
    result = run(runtime, """
        name: wf
        steps:
          - {id: s, node: t_secret, with: {token: "${{ secrets.PM_TEST_TOKEN }}"}}
        outputs: {echo: "${{ steps.s.outputs.echoed }}"}
        """)
    assert result.status is RunStatus.SUCCEEDED
    assert result.steps["s"].outputs["length"] == len(secret)
    assert result.outputs == {"echo": "token=***"}
    assert secret not in caplog.text and "using token ***" in caplog.text
    runtime.store.engine.dispose()
    for path in (tmp_path / "home").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_invalid_rendered_input_names_step_and_field(runtime):
    result = run(runtime, """
        name: wf
        inputs: {seed: {default: abc}}
        steps:
          - id: p
            node: prompt
            with: {template: hi, seed: "${{ inputs.seed }}"}
        """)
    assert result.status is RunStatus.FAILED
    assert result.error["message"] == (
        "step 'p' (prompt) failed: input 'seed': must be a valid integer, unable to parse string as an integer "
        "(got 'abc')")


def test_cancel_a_running_run(runtime):
    wf = load_text(dedent("""
        name: wf
        steps:
          - {id: slow, node: t_sleep, with: {seconds: 5}}
          - {id: next, node: t_echo, needs: [slow]}
        """), "wf.yaml", runtime.registry)
    run_id = runtime.submit(wf)
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("r", runtime.executor.execute(wf, run_id, inputs={})))
    worker.start()
    time.sleep(0.3)
    runtime.executor.cancel(run_id)
    worker.join(3)
    result = box["r"]
    assert result.status is RunStatus.CANCELLED
    assert result.steps["slow"].status is StepStatus.CANCELLED
    assert result.steps["next"].status is StepStatus.CANCELLED
    assert runtime.store.get_run(run_id)["status"] == "cancelled"


def test_a_run_is_claimed_once(runtime):
    wf = load_text("name: wf\nsteps: [{id: a, node: t_echo}]\n", "wf.yaml", runtime.registry)
    run_id = runtime.submit(wf)
    assert runtime.executor.execute(wf, run_id, inputs={}).status is RunStatus.SUCCEEDED
    assert runtime.executor.execute(wf, run_id, inputs={}) is None


def test_reuse_outputs_when_retrying_from_failed_step(runtime):
    wf = load_text(dedent("""
        name: wf
        steps:
          - {id: a, node: t_echo, cache: false, with: {value: 5}}
          - {id: b, node: t_echo, cache: false, with: {value: "${{ steps.a.outputs.value }}"}}
        """), "wf.yaml", runtime.registry)
    run_id = runtime.submit(wf)
    result = runtime.executor.execute(wf, run_id, inputs={}, reuse={"a": {"value": 7}})
    assert result.steps["b"].outputs == {"value": 7}
    assert [c[1] for c in CALLS.items] == ["b"]


def test_events_are_ordered_and_persisted(runtime):
    seen = []
    runtime.bus.subscribe(seen.append)
    result = run(runtime, "name: wf\nsteps: [{id: a, node: t_sleep, with: {seconds: 0.1}}]\n")
    kinds = [e.kind.value for e in seen]
    assert kinds[0] == "run.started" and kinds[-1] == "run.finished"
    assert kinds.index("step.started") < kinds.index("step.progress") < kinds.index("step.finished")
    stored = runtime.store.events(result.run_id)
    assert [e.kind.value for e in stored] == ["run.queued"] + kinds
    assert [e.id for e in stored][1:] == [e.id for e in seen]


# -- issue 9 item 11: every failure inside the executor ends the run failed, with step id and cause -------

def test_undefined_value_inside_a_list_fails_the_step(runtime):
    result = run(runtime, """
        name: wf
        steps:
          - {id: e, node: t_echo, with: {value: "${{ [1, {'a': 1}.zzz] }}"}}
          - {id: p, node: prompt, with: {template: hi, vars: {a: "${{ {'k': [{'b': 2}.yyy]} }}"}}}
        """)
    assert result.status.value == "failed"
    assert result.error["step_id"] in ("e", "p")
    assert "undefined" in result.error["message"]
    assert {s: r.status.value for s, r in result.steps.items()}["e"] == "failed"
    assert runtime.store.get_run(result.run_id)["status"] == "failed"


def test_result_too_large_to_store_fails_the_step(runtime):
    runtime.executor.max_stored_bytes = 10_000
    result = run(runtime, """
        name: wf
        steps:
          - {id: big, node: t_echo, with: {value: "${{ 'x' * 20000 }}"}}
        """)
    assert result.status.value == "failed" and result.error["step_id"] == "big"
    assert "more than the run store keeps" in result.error["message"]
    assert runtime.store.get_run(result.run_id)["status"] == "failed"


def test_unexpected_error_inside_the_executor_ends_the_run_failed(runtime, monkeypatch):
    real = runtime.store.record
    state = {"failed": 0}

    def flaky_record(ev):
        if ev.kind.value == "step.finished" and not state["failed"]:
            state["failed"] += 1
            raise RuntimeError("disk I/O error")
        return real(ev)

    monkeypatch.setattr(runtime.store, "record", flaky_record)
    result = run(runtime, "name: wf\nsteps: [{id: a, node: t_echo, cache: false, with: {value: 1}}]\n")
    assert result.status.value == "failed"
    assert result.error["step_id"] == "a" and "disk I/O error" in result.error["message"]
    stored = runtime.store.get_run(result.run_id)
    assert stored["status"] == "failed" and stored["error"]["step_id"] == "a"


def test_cli_run_never_prints_a_traceback(tmp_path):
    import os
    import subprocess
    import sys

    wf = tmp_path / "wf.yaml"
    wf.write_text("name: wf\nsteps:\n  - id: p\n    node: prompt\n    with: {template: hi, vars: {a: \"${{ [1, {}.nope] }}\"}}\n")
    env = dict(os.environ, PIXELMILL_HOME=str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, "-m", "pixelmill.cli", "run", str(wf), "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    out = json.loads(proc.stdout)
    assert out["status"] == "failed" and out["error"]["step_id"] == "p" and "undefined" in out["error"]["message"]


# -- issue 9 item 14: secrets and values derived from them are redacted on every output path ------------

SECRET = "s3cr3t-Value-42"


def test_transformed_secrets_are_redacted_everywhere(runtime, monkeypatch, tmp_path):
    monkeypatch.setenv("PM_TEST_TOKEN", SECRET)
    seen = []
    runtime.bus.subscribe(seen.append)
    result = run(runtime, """
        name: wf
        steps:
          - id: p
            node: prompt
            with:
              template: "{{ a }} / {{ b }} / {{ c }}"
              vars: {a: "${{ secrets.PM_TEST_TOKEN | upper }}", b: "${{ secrets.PM_TEST_TOKEN | reverse }}",
                     c: "x-${{ secrets.PM_TEST_TOKEN | replace('-', '_') }}"}
              seed: 1
          - {id: s, node: t_secret, with: {token: "${{ secrets.PM_TEST_TOKEN | lower }}"}}
          - id: bad
            node: t_echo
            on_error: continue
            with: {value: "${{ {}[secrets.PM_TEST_TOKEN | upper] + 1 }}"}
        outputs: {text: "${{ steps.p.outputs.text }}", upper: "${{ secrets.PM_TEST_TOKEN | title }}"}
        """)
    assert result.status.value == "succeeded", result.error
    derived = [SECRET, SECRET.upper(), SECRET[::-1], SECRET.replace("-", "_"), SECRET.lower(), SECRET.title()]
    public = json.dumps({"outputs": result.outputs, "error": result.error,
                         "steps": {k: [v.outputs, v.error] for k, v in result.steps.items()}})
    events = json.dumps([e.to_dict() for e in seen] + [e.to_dict() for e in runtime.store.events(result.run_id)])
    stored = json.dumps(runtime.store.get_run(result.run_id))
    for text in (public, events, stored):
        for value in derived:
            assert value not in text
    assert result.steps["p"].outputs["text"] == "*** / *** / x-***"
    assert "details hidden" in result.steps["bad"].error["message"]
    runtime.store.engine.dispose()
    for path in (tmp_path / "home").rglob("*"):
        if path.is_file():
            for value in derived:
                assert value.encode() not in path.read_bytes(), (path, value)


def test_secrets_shorter_than_four_characters_are_refused(runtime, monkeypatch):
    monkeypatch.setenv("PM_SHORT", "abc")
    result = run(runtime, "name: wf\nsteps: [{id: s, node: t_secret, with: {token: '${{ secrets.PM_SHORT }}'}}]\n")
    assert result.status.value == "failed" and result.error["step_id"] == "s"
    assert "refuses secrets shorter than 4 characters" in result.error["message"]


def test_cli_run_json_redacts_step_outputs(tmp_path):
    import os
    import subprocess
    import sys

    wf = tmp_path / "wf.yaml"
    wf.write_text("name: wf\nsteps:\n  - id: p\n    node: prompt\n"
                  "    with: {template: 'key {{ k }}', vars: {k: \"${{ secrets.PM_TEST_TOKEN | upper }}\"}}\n")
    env = dict(os.environ, PIXELMILL_HOME=str(tmp_path / "home"), PM_TEST_TOKEN=SECRET)
    proc = subprocess.run([sys.executable, "-m", "pixelmill.cli", "run", str(wf), "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["steps"]["p"]["outputs"]["text"] == "key ***"
    assert SECRET.upper() not in proc.stdout + proc.stderr


# -- issue 9 item 13: a timeout or a cancel stops built-in nodes within 1 s ---------------------------------

BUSY = "{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}"


@pytest.fixture
def unbounded_render(monkeypatch):
    from pixelmill import sandbox

    monkeypatch.setattr(sandbox, "DEFAULT_LIMITS", sandbox.Limits(max_work=10**9, max_seconds=600))


def _alive(name):
    return any(t.name == name for t in threading.enumerate())


def test_timeout_stops_a_cpu_bound_prompt_within_a_second(runtime, unbounded_render):
    t0 = time.monotonic()
    result = run(runtime, f"""
        name: wf
        steps:
          - {{id: busy, node: prompt, timeout: 0.3, with: {{template: "{BUSY}", seed: 1}}}}
        """)
    assert result.error["type"] == "StepTimeout" and result.error["step_id"] == "busy"
    while _alive("pixelmill-busy") and time.monotonic() - t0 < 1.3:
        time.sleep(0.02)
    assert not _alive("pixelmill-busy"), "the prompt node kept running after its timeout"


def test_cancel_stops_a_cpu_bound_prompt_within_a_second(runtime, unbounded_render):
    wf = load_text(dedent(f"""
        name: wf
        steps:
          - {{id: busy, node: prompt, with: {{template: "{BUSY}", seed: 1}}}}
        """), "wf.yaml", runtime.registry)
    run_id = runtime.submit(wf)
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("r", runtime.executor.execute(wf, run_id, inputs={})))
    worker.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    runtime.executor.cancel(run_id)
    worker.join(5)
    assert time.monotonic() - t0 < 1.0
    assert box["r"].status is RunStatus.CANCELLED


def test_node_context_deadline_and_wait(tmp_path):
    from pixelmill.node import NodeContext
    from pixelmill.secrets import Secrets

    ctx = NodeContext(run_id="r", step_id="s", workflow="w", artifacts_root=tmp_path, secrets=Secrets({}),
                      deadline=time.monotonic() + 0.2)
    assert not ctx.cancelled and 0 < ctx.time_left() <= 0.2
    t0 = time.monotonic()
    assert ctx.wait(5) is True and time.monotonic() - t0 < 0.5
    assert ctx.cancelled and ctx.time_left() == 0


# -- issue 9 item 18: a run re-queued after a crash resumes from its stored step results ---------------------

RESUME_WF = """
    name: wf
    steps:
      - {id: a, node: t_file, cache: false, with: {text: first}}
      - {id: b, node: t_file, cache: false, with: {text: "${{ steps.a.outputs.file.name }}"}}
    """


def _dead_owner() -> str:
    import socket

    return f"{socket.gethostname()}:{2**22 + 4321}:0"  # above Linux's pid_max: no such process


def test_interrupted_run_resumes_without_rerunning_finished_steps(runtime):
    from sqlalchemy import update

    from pixelmill.db import RunRow
    from pixelmill.events import Event, EventKind

    wf = load_text(dedent(RESUME_WF), "wf.yaml", runtime.registry)
    store = runtime.store
    run_id = runtime.submit(wf)
    assert store.claim(run_id)
    # what a process that died during step b left behind
    run_dir = store.artifacts_root / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "a-out.txt").write_text("first")
    (run_dir / "b-out.txt").write_text("half writt")
    a_out = {"file": {"kind": "artifact", "run_id": run_id, "name": "a-out.txt", "media_type": "text/plain"}}
    for ev in (Event(EventKind.RUN_STARTED, run_id, None, {"workflow": "wf"}),
               Event(EventKind.STEP_STARTED, run_id, "a", {"node": "t_file", "attempt": 1, "inputs": {}}),
               Event(EventKind.STEP_FINISHED, run_id, "a", {"status": "succeeded", "outputs": a_out, "attempts": 1,
                                                            "duration_s": 1.5, "node": "t_file"}),
               Event(EventKind.STEP_STARTED, run_id, "b", {"node": "t_file", "attempt": 1, "inputs": {}})):
        store.record(ev)
    with store.writing() as conn:
        conn.execute(update(RunRow).where(RunRow.id == run_id).values(owner=_dead_owner()))
    assert store.recover_interrupted(requeue=True) == [run_id]

    result = runtime.executor.execute(wf, run_id, inputs={})
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert [c[1] for c in CALLS.items] == ["b"]  # a was not run again
    assert result.steps["a"].outputs == a_out
    assert sorted(p.name for p in run_dir.iterdir()) == ["a-out.txt", "b-out.txt"]  # no a-out-2.txt, no b-out-2
    assert (run_dir / "b-out.txt").read_text() == "a-out.txt"
    steps = {s["step_id"]: s for s in store.get_run(run_id)["steps"]}
    assert len(store.get_run(run_id)["steps"]) == 2  # one row per step, updated in place
    assert steps["a"]["duration_s"] == 1.5 and steps["a"]["attempts"] == 1
    assert steps["b"]["status"] == "succeeded" and steps["b"]["attempts"] == 1


def test_model_nodes_stop_within_a_second_of_a_timeout(tmp_path):
    pytest.importorskip("torch")
    from pixelmill.runtime import Runtime
    from pixelmill.settings import Settings

    rt = Runtime.create(Settings.from_env(home=tmp_path))
    try:
        gen = ("  - {id: gen, node: generate_image, config: {model: embedded}, cache: false, timeout: %s,\n"
               "     with: {prompt: 'a red circle', seed: 1, steps: %d}}\n")
        warm = rt.run(load_text("name: w\nsteps:\n" + gen % ("null", 1), "w.yaml", rt.registry))
        assert warm.status is RunStatus.SUCCEEDED, warm.error  # the model is loaded now
        t0 = time.monotonic()
        result = rt.run(load_text("name: w\nsteps:\n" + gen % ("0.5", 500), "w.yaml", rt.registry))
        assert result.error["type"] == "StepTimeout"
        while _alive("pixelmill-gen") and time.monotonic() - t0 < 1.5:
            time.sleep(0.02)
        assert not _alive("pixelmill-gen")
    finally:
        rt.close()


def test_caption_generation_asks_whether_to_stop_after_each_token():
    pytest.importorskip("torch")
    from PIL import Image

    from pixelmill.models.loaders import load_captioner, resolve_model
    from pixelmill_nodes.caption import caption_images

    captioner = load_captioner(resolve_model("embedded", "blip", "cpu", "auto"))
    image = Image.new("RGB", (32, 32), (200, 30, 30))
    asked = []
    full = caption_images(captioner, [image], max_tokens=12)
    short = caption_images(captioner, [image], max_tokens=12, should_stop=lambda: asked.append(1) or True)
    assert asked and len(short[0].split()) < len(full[0].split())
