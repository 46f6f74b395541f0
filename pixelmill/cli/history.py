"""``pixelmill runs``, ``show`` and ``prune``: the run history."""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta

import click

from ..settings import Settings
from ..store import RunStore, utcnow
from .common import echo_json


def _store() -> RunStore:
    settings = Settings.from_env()
    store = RunStore(settings.db_url, settings.artifacts_root)
    store.recover_interrupted()  # runs left 'running' by a dead process become 'interrupted'
    return store


@click.command("runs")
@click.option("--workflow", help="only this workflow")
@click.option("--status", help="only this status")
@click.option("-n", "--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def runs_cmd(workflow, status, limit, as_json) -> None:
    """List recent runs."""
    store = _store()
    runs = store.list_runs(workflow=workflow, status=status, limit=limit)
    if as_json:
        echo_json(runs)
        return
    for r in runs:
        click.echo(f"{r['id']}  {r['created_at'][:19]}  {r['status']:<11} {r['workflow']}  ({r['trigger_kind']})")


@click.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
def show_cmd(run_id: str, as_json: bool) -> None:
    """Show one run with its steps, outputs and errors."""
    run = _store().get_run(run_id)
    if run is None:
        click.echo(f"no run '{run_id}' (see 'pixelmill runs')", err=True)
        sys.exit(1)
    if as_json:
        echo_json(run)
        return
    click.echo(f"run {run['id']}  {run['workflow']}  {run['status']}")
    click.echo(f"  created {run['created_at']}  started {run['started_at']}  finished {run['finished_at']}")
    click.echo(f"  inputs: {run['inputs']}")
    for s in run["steps"]:
        took = f"{s['duration_s']:.3f} s" if s["duration_s"] is not None else "-"
        click.echo(f"  - {s['step_id']} ({s['node_type']}): {s['status']}, {took}, attempts {s['attempts']}")
        if s["outputs"]:
            click.echo(f"      outputs: {s['outputs']}")
        if s["error"]:
            click.echo(f"      error: {s['error'].get('message')}")
    if run["outputs"]:
        click.echo(f"  outputs: {run['outputs']}")
    if run["error"]:
        click.echo(f"  error: {run['error'].get('message')}")


_AGE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _age(text: str) -> timedelta:
    m = _AGE.match(text.strip())
    if not m:
        raise click.BadParameter(f"'{text}' is not an age like 30d, 12h or 2w", param_hint="--older-than")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


@click.command("prune")
@click.option("--older-than", "older_than", required=True, help="age such as 30d, 12h, 2w")
def prune_cmd(older_than: str) -> None:
    """Delete finished runs older than an age, with their artifacts."""
    cutoff: datetime = utcnow() - _age(older_than)
    n = _store().prune(cutoff)
    click.echo(f"deleted {n} run{'s' if n != 1 else ''} finished before {cutoff.isoformat(timespec='seconds')}Z")


COMMANDS = [runs_cmd, show_cmd, prune_cmd]
