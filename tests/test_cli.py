"""The CLI through real subprocesses: run, validate, schema, nodes, history, across processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pixelmill.settings import Settings
from pixelmill.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
PIXELMILL = [sys.executable, "-m", "pixelmill.cli"]


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ, PIXELMILL_HOME=str(tmp_path / "home"))
    e.pop("PYTHONPATH", None)
    return e


def cli(*args, env, check=True, **kw):
    proc = subprocess.run([*PIXELMILL, *args], env=env, capture_output=True, text=True, cwd=ROOT, timeout=120, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_run_json_is_reproducible_across_processes_and_persisted(env, tmp_path):
    a = json.loads(cli("run", "workflows/hello-prompt.yaml", "-i", "seed=11", "--json", env=env).stdout)
    b = json.loads(cli("run", "workflows/hello-prompt.yaml", "-i", "seed=11", "--json", env=env).stdout)
    assert a["status"] == b["status"] == "succeeded"
    assert a["outputs"]["prompt"] == b["outputs"]["prompt"] and a["outputs"]["seed"] == 11
    assert a["run_id"] != b["run_id"]
    # another process (this one) reads both runs back from the store
    store = RunStore(Settings.from_env(home=tmp_path / "home").db_url, tmp_path / "home" / "runs")
    runs = {r["id"]: r for r in store.list_runs()}
    assert set(runs) == {a["run_id"], b["run_id"]}
    stored = store.get_run(a["run_id"])
    assert stored["outputs"] == a["outputs"] and stored["steps"][0]["status"] == "succeeded"
    listed = cli("runs", env=env).stdout
    assert a["run_id"][:12] in listed and "succeeded" in listed
    shown = cli("show", a["run_id"], env=env).stdout
    assert "prompt (prompt)  succeeded in" in shown


def test_calendar_workflow_run_outside_the_calendar_skips_its_post(env):
    # weekly-calendar posts only in its calendar's post phase; a plain run (CLI, API, webhook) has no
    # trigger.calendar and must draft the prompt, skip the post and succeed, not fail on the expression
    out = json.loads(cli("run", "workflows/weekly-calendar.yaml", "--json", env=env).stdout)
    assert out["status"] == "succeeded", out
    assert out["outputs"]["prompt"] == "a lighthouse at dawn, watercolour" and out["outputs"]["post"] is None


def test_run_non_tty_is_quiet_and_reports_result(env):
    proc = cli("run", "workflows/hello-prompt.yaml", env=env)
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("run ") and lines[0].endswith(": succeeded")
    assert proc.stderr == ""


def test_run_bad_input_exit_2(env):
    proc = cli("run", "workflows/hello-prompt.yaml", "-i", "seed=abc", "-i", "colour=red", env=env, check=False)
    assert proc.returncode == 2
    assert "workflows/hello-prompt.yaml: unknown input 'colour' (this workflow takes: seed, style)" in proc.stderr
    assert "input 'seed' must be an integer, not 'abc'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_validate_reports_file_line_col_and_exit_code(env, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps:\n  - id: a\n    node: promt\n")
    proc = cli("validate", str(bad), "workflows", env=env, check=False)
    assert proc.returncode == 1
    assert f"{bad}:4:11: step 'a': unknown node 'promt' (did you mean 'prompt'?)" in proc.stderr
    assert "1 problem found" in proc.stderr
    ok = cli("validate", "workflows", env=env)
    assert "ok: workflows/hello-prompt.yaml" in ok.stdout


def test_schema_matches_committed_file(env):
    out = cli("schema", env=env).stdout
    schema = json.loads(out)
    items = schema["properties"]["steps"]["items"]
    node_types = {n["type"] for n in json.loads(cli("nodes", "--json", env=env).stdout)}
    assert {f"Step_{t}" for t in node_types} <= set(schema["$defs"])
    # one variant per node type, selected by 'node' (if/then), plus the generic step for other nodes
    assert len(items["allOf"]) == len(node_types) + 1
    assert {b["then"]["$ref"] for b in items["allOf"]} == {f"#/$defs/Step_{t}" for t in node_types} | {"#/$defs/Step"}
    committed = (ROOT / "workflows" / "pixelmill.schema.json").read_text()
    assert json.loads(committed) == schema, "run 'make schema' to refresh workflows/pixelmill.schema.json"
    from pixelmill.loader import workflow_files  # calendar files (calendar.yaml) hold rows, not workflows

    for wf in workflow_files(ROOT / "workflows"):
        assert wf.read_text().startswith("# yaml-language-server: $schema=./pixelmill.schema.json"), wf


def test_nodes_lists_builtin_with_distribution(env):
    out = cli("nodes", env=env).stdout
    assert "prompt@1  [pixelmill]" in out
    data = json.loads(cli("nodes", "--json", env=env).stdout)
    prompt = next(n for n in data if n["type"] == "prompt")
    assert "template" in prompt["inputs"]["properties"]


SLOW_RUN = """
import sys
sys.path.insert(0, {root!r})
from pixelmill.loader import load_text
from pixelmill.runtime import Runtime
from tests.conftest import dedent
from tests.testnodes import TEST_NODES
rt = Runtime.create()
for cls in TEST_NODES:
    rt.registry.register(cls)
wf = load_text("name: slow\\nsteps: [{{id: s, node: t_sleep, with: {{seconds: 60}}}}]\\n", "slow.yaml", rt.registry)
rt.run(wf)
"""


def test_run_left_running_by_killed_process_is_marked_interrupted(env, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN.format(root=str(ROOT))], env=env, cwd=ROOT)
    store = RunStore(Settings.from_env(home=tmp_path / "home").db_url, tmp_path / "home" / "runs")
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            runs = store.list_runs() if (tmp_path / "home" / "pixelmill.db").exists() else []
            if runs and runs[0]["status"] == "running" and store.get_run(runs[0]["id"])["steps"]:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the slow run never started")
        assert store.recover_interrupted() == []  # its process is alive: left alone
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    listed = cli("runs", env=env).stdout  # the next start notices
    assert "interrupted" in listed
    run = store.get_run(runs[0]["id"])
    assert run["status"] == "interrupted" and run["steps"][0]["status"] == "interrupted"


def test_prune(env, tmp_path):
    cli("run", "workflows/hello-prompt.yaml", env=env)
    assert "nothing to delete" in cli("prune", "--older-than", "1d", env=env).stdout
    time.sleep(1.1)
    assert "deleted 1 run " in cli("prune", "--older-than", "1s", "--yes", env=env).stdout
    assert cli("runs", env=env).stdout.strip() == ""
    bad = cli("prune", "--older-than", "soon", env=env, check=False)
    assert bad.returncode == 2 and "'soon' is not an age like 30d" in bad.stderr


def test_third_party_node_package_plugs_in_through_entry_points(env, tmp_path):
    from pixelmill.testing import check_node

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT / "tests" / "plugins" / "pixelmill-shout")],
                   check=True, capture_output=True, timeout=300)
    env = dict(env, PYTHONPATH=str(target))
    out = cli("nodes", env=env).stdout
    assert "shout@1  [pixelmill-shout]" in out
    wf = tmp_path / "shout.yaml"
    wf.write_text("name: shout\nsteps:\n  - {id: s, node: shout, config: {marks: 2}, with: {text: hi}}\n"
                  "outputs: {text: '${{ steps.s.outputs.text }}'}\n")
    result = json.loads(cli("run", str(wf), "--json", env=env).stdout)
    assert result["outputs"] == {"text": "HI!!"}
    sys.path.insert(0, str(target))
    try:
        from pixelmill_shout.node import Shout

        assert check_node(Shout, inputs={"text": "a"}, config={"marks": 3}).text == "A!!!"
    finally:
        sys.path.remove(str(target))
