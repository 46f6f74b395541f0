"""`pixelmill runs`, `show` and `prune` as a newcomer meets them (issue 9, item 30), in-process with click's runner."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from pixelmill.cli import main
from pixelmill.db import RunRow
from pixelmill.loader import load_text
from pixelmill.store import utcnow

from .conftest import dedent

OK = dedent("""
    name: ok
    steps:
      - {id: a, node: t_echo, with: {value: {answer: 42, tags: [x, y]}}}
    outputs: {answer: '${{ steps.a.outputs.value.answer }}'}
""")
FAILS = dedent("""
    name: fails
    steps:
      - {id: a, node: t_echo, with: {value: first}}
      - {id: b, node: t_flaky, config: {fail_times: 5, permanent: true}, needs: [a]}
      - {id: c, node: t_echo, with: {value: '${{ steps.b.outputs.attempt }}'}}
      - {id: d, node: t_echo, with: {value: '${{ steps.c.outputs.value }}'}}
""")


def cli(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def runs(runtime):
    ok = runtime.run(load_text(OK, "ok.yaml", runtime.registry))
    failed = runtime.run(load_text(FAILS, "fails.yaml", runtime.registry))
    assert (ok.status.value, failed.status.value) == ("succeeded", "failed")
    return runtime, ok.run_id, failed.run_id


def test_runs_has_header_duration_and_error_columns(runs):
    _, ok, failed = runs
    out = cli("runs")
    assert out.exit_code == 0
    header, *rows = out.stdout.splitlines()
    assert header.split() == ["RUN", "CREATED", "(UTC)", "STATUS", "DURATION", "WORKFLOW", "TRIGGER", "ERROR"]
    row = next(r for r in rows if r.startswith(failed[:12]))
    assert " failed " in row and " s " in row and "step 'b' (t_flaky) failed: permanent failure 1" in row
    assert next(r for r in rows if r.startswith(ok[:12])).rstrip().endswith("manual")


def test_runs_json_hides_the_internal_owner_field(runs):
    _, ok, _ = runs
    listed = json.loads(cli("runs", "--json").stdout)
    assert listed and all("owner" not in r for r in listed)
    shown = json.loads(cli("show", ok, "--json").stdout)
    assert "owner" not in shown and shown["id"] == ok


def test_runs_unknown_status_is_an_error_listing_the_statuses(runs):
    out = cli("runs", "--status", "bogus")
    assert out.exit_code == 2
    assert "'bogus' is not one of 'queued', 'running', 'succeeded', 'failed'" in out.stderr
    assert cli("runs", "--status", "FAILED").stdout.count("\n") == 2  # header + the one failed run


def test_runs_on_an_empty_store_says_where_it_looked(runtime):
    out = cli("runs")
    assert out.exit_code == 0 and out.stdout == ""
    assert f"no runs in {runtime.settings.home / 'pixelmill.db'}" in out.stderr
    assert "PIXELMILL_HOME" in out.stderr
    assert "no runs with status failed in" in cli("runs", "--status", "failed").stderr


def test_show_accepts_a_unique_prefix_and_prints_plain_text(runs):
    runtime, ok, _ = runs
    out = cli("show", ok[:6])
    assert out.exit_code == 0, out.output
    text = out.stdout
    assert text.startswith(f"run {ok}\n")
    assert "status:   succeeded in" in text and "a (t_echo)  succeeded in" in text
    assert 'value: {"answer": 42, "tags": ["x", "y"]}' in text and "answer: 42" in text
    assert "{'" not in text and "None" not in text  # no Python reprs


def test_show_with_an_ambiguous_or_unknown_prefix_says_so(runtime):
    for rid in ("abcd" + "1" * 28, "abcd" + "2" * 28):
        runtime.store.create_run("w", inputs={}, run_id=rid)
    out = cli("show", "abcd")
    assert out.exit_code == 1 and "matches more than one run" in out.stderr and "abcd1111" in out.stderr
    assert cli("show", "abcd1").exit_code == 0
    missing = cli("show", "ffff")
    assert missing.exit_code == 1 and "no run 'ffff' in" in missing.stderr
    assert cli("show", "%").exit_code == 1  # not a LIKE wildcard


def test_steps_after_a_failure_show_as_not_run(runs):
    _, _, failed = runs
    text = cli("show", failed).stdout
    assert "b (t_flaky)  failed in" in text and "error: step 'b' (t_flaky) failed: permanent failure 1" in text
    assert "c (t_echo)   not run: an earlier step failed" in text
    assert "d (t_echo)   not run: an earlier step failed" in text
    assert "cancelled" not in text


def test_reused_steps_of_a_retry_say_where_they_came_from(runs):
    runtime, _, failed = runs
    loaded = load_text(FAILS, "fails.yaml", runtime.registry)
    first = runtime.store.get_run(failed)
    reuse = {s["step_id"]: s["outputs"] for s in first["steps"] if s["status"] == "succeeded"}
    retry = runtime.store.create_run("fails", inputs={}, retry_of=failed)
    runtime.executor.execute(loaded, retry, inputs={}, reuse=reuse)
    text = cli("show", retry).stdout
    assert f"retry of: {failed}" in text
    assert f"a (t_echo)   reused from run {failed[:12]}" in text
    assert "attempts 0" not in text and "0.000 s" not in text


def _age_runs(runtime, days: float) -> None:
    with runtime.store.writing() as conn:
        conn.execute(update(RunRow).values(created_at=utcnow() - timedelta(days=days)))


@pytest.mark.parametrize("age", ["1m", "2mo", "1y", "3 months", "soon", "1.5d", "-1d"])
def test_prune_refuses_ambiguous_or_unknown_units(runs, age):
    out = cli("prune", "--older-than", age, "--yes")
    assert out.exit_code == 2
    assert "ambiguous" in out.stderr if age[-1] in "moy" or "month" in age else "not an age like" in out.stderr
    assert len(json.loads(cli("runs", "--json").stdout)) == 2  # nothing deleted


def test_prune_minutes_are_spelled_min(runs):
    runtime, _, _ = runs
    _age_runs(runtime, 2 / 24 / 60)  # two minutes ago
    assert "nothing to delete" in cli("prune", "--older-than", "90min", "--yes").stdout
    assert "deleted 2 runs" in cli("prune", "--older-than", "1min", "--yes").stdout


def test_prune_dry_run_lists_and_deletes_nothing(runs):
    runtime, ok, failed = runs
    _age_runs(runtime, 3)
    out = cli("prune", "--older-than", "2d", "--dry-run")
    assert out.exit_code == 0 and "would delete 2 finished runs created before" in out.stdout
    assert ok[:12] in out.stdout and failed[:12] in out.stdout
    assert len(json.loads(cli("runs", "--json").stdout)) == 2


def test_prune_asks_first_and_yes_skips_the_question(runs):
    runtime, _, _ = runs
    _age_runs(runtime, 3)
    declined = cli("prune", "--older-than", "2d", input="n\n")
    assert declined.exit_code == 1 and "delete 2 finished runs" in declined.stderr
    assert "nothing deleted (pass --yes" in declined.stderr
    no_answer = cli("prune", "--older-than", "2d", input="")
    assert no_answer.exit_code == 1 and len(json.loads(cli("runs", "--json").stdout)) == 2
    assert "deleted 2 runs" in cli("prune", "--older-than", "2d", input="y\n").stdout
    assert json.loads(cli("runs", "--json").stdout) == []
    runtime.run(load_text(OK, "ok.yaml", runtime.registry))
    _age_runs(runtime, 3)
    assert "deleted 1 run " in cli("prune", "--older-than", "2d", "--yes").stdout
