"""``pixelmill runs``, ``show`` and ``prune``: the run history."""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta, timezone

import click
from sqlalchemy import select
from sqlalchemy.engine import make_url

from ..db import RunRow
from ..events import EventKind
from ..settings import Settings
from ..status import RunStatus
from ..store import RunStore, utcnow
from . import display
from .common import echo_json

PRIVATE = ("owner",)  # internal bookkeeping (which process holds a run), not part of a run's record


def _store() -> RunStore:
    settings = Settings.from_env()
    store = RunStore(settings.db_url, artifacts=settings.artifact_store())
    store.recover_interrupted()  # runs left 'running' by a dead process become 'interrupted'
    return store


def where(store: RunStore) -> str:
    """The store this command reads, said so that a person can find it (no password)."""
    url = make_url(store.url)
    if url.get_backend_name() == "sqlite" and url.database:
        text = url.database
    else:
        text = url.render_as_string(hide_password=True)
    return f"{text} (PIXELMILL_HOME={Settings.from_env().home}; set PIXELMILL_HOME or PIXELMILL_DB_URL to read another)"


def public(run: dict) -> dict:
    return {k: v for k, v in run.items() if k not in PRIVATE}


def resolve_id(store: RunStore, text: str) -> str:
    """A full run id from a unique prefix of one (like git); exits 1 with a clear message otherwise."""
    text = text.strip()
    if not text:
        click.echo("error: give a run id or the start of one (see 'pixelmill runs')", err=True)
        sys.exit(1)
    with store.engine.connect() as conn:
        ids = [r[0] for r in conn.execute(
            select(RunRow.id).where(RunRow.id.startswith(text, autoescape=True)).order_by(RunRow.id).limit(6))]
    if text in ids:
        return text
    if len(ids) == 1:
        return ids[0]
    if not ids:
        click.echo(f"error: no run '{text}' in {where(store)}; see 'pixelmill runs'", err=True)
    else:
        more = " and more" if len(ids) > 5 else ""
        click.echo(f"error: run id '{text}' matches more than one run: {', '.join(ids[:5])}{more}; "
                   f"give more characters", err=True)
    sys.exit(1)


@click.command("runs")
@click.option("--workflow", help="only this workflow")
@click.option("--status", type=click.Choice([s.value for s in RunStatus], case_sensitive=False),
              help="only this status")
@click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(1, None))
@click.option("--json", "as_json", is_flag=True)
def runs_cmd(workflow, status, limit, as_json) -> None:
    """List recent runs, newest first."""
    store = _store()
    runs = store.list_runs(workflow=workflow, status=status.lower() if status else None, limit=limit)
    if as_json:
        echo_json([public(r) for r in runs])
        return
    if not runs:
        which = ", ".join(f"{k} {v}" for k, v in (("workflow", workflow), ("status", status)) if v)
        click.echo(f"no runs{' with ' + which if which else ''} in {where(store)}", err=True)
        return
    now = datetime.now(timezone.utc)
    rows = [("RUN", "CREATED (UTC)", "STATUS", "DURATION", "WORKFLOW", "TRIGGER", "ERROR")]
    for r in runs:
        took = display.run_duration(r, None if r["finished_at"] else now)
        error = display.shorten((r.get("error") or {}).get("message", ""), 70) if r.get("error") else ""
        rows.append((r["id"][:display.SHORT_ID], display.clock(r["created_at"]), r["status"],
                     display.duration(took), r["workflow"], r["trigger_kind"] or "", error))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])


@click.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
def show_cmd(run_id: str, as_json: bool) -> None:
    """Show one run (RUN_ID or a unique start of it) with its steps, outputs and errors."""
    store = _store()
    run = store.get_run(resolve_id(store, run_id))
    if as_json:
        echo_json(public(run))
        return
    reasons: dict[str, str] = {}
    reused: set[str] = set()
    after = 0
    while batch := store.events(run["id"], after=after):
        for ev in batch:
            if ev.kind is EventKind.STEP_SKIPPED and ev.data.get("reason"):
                reasons[ev.step_id] = ev.data["reason"]
            elif ev.kind is EventKind.STEP_FINISHED and ev.data.get("reused"):
                reused.add(ev.step_id)
        after = batch[-1].id
    root = store.artifacts_root
    took = display.run_duration(run)
    click.echo(f"run {run['id']}")
    head = {"workflow": run["workflow"] + (f" ({run['workflow_file']})" if run.get("workflow_file") else ""),
            "status": run["status"] + (f" in {display.duration(took)}" if took is not None else ""),
            "trigger": run.get("trigger_kind") or "-",
            "created": f"{display.clock(run['created_at'])} UTC"}
    if run.get("retry_of"):
        head["retry of"] = run["retry_of"]
    for line in display.mapping_lines(head, "  "):
        click.echo(line)
    if run.get("inputs"):
        click.echo("inputs")
        for line in display.mapping_lines(run["inputs"], "  ", root):
            click.echo(line)
    if run["steps"]:
        click.echo("steps")
    width = max((len(f"{s['step_id']} ({s['node_type']})") for s in run["steps"]), default=0)
    for s in run["steps"]:
        label = f"{s['step_id']} ({s['node_type']})"
        click.echo(f"  {label:<{width}}  {display.step_state(s, run, reasons, reused)}")
        for line in display.mapping_lines(s["outputs"], "      ", root):
            click.echo(line)
        if s.get("error"):
            click.echo(f"      error: {s['error'].get('message')}")
    if run["outputs"]:
        click.echo("outputs")
        for line in display.mapping_lines(run["outputs"], "  ", root):
            click.echo(line)
    if run["error"]:
        click.echo(f"error: {run['error'].get('message')}")


_AGE = re.compile(r"^(\d+)\s*([a-z]+)$")
_UNITS = {"s": "seconds", "sec": "seconds", "secs": "seconds", "second": "seconds", "seconds": "seconds",
          "min": "minutes", "mins": "minutes", "minute": "minutes", "minutes": "minutes",
          "h": "hours", "hr": "hours", "hrs": "hours", "hour": "hours", "hours": "hours",
          "d": "days", "day": "days", "days": "days", "w": "weeks", "week": "weeks", "weeks": "weeks"}
_AMBIGUOUS = {"m": "minutes or months", "mo": "months", "mon": "months", "month": "months", "months": "months",
              "y": "years", "yr": "years", "year": "years", "years": "years"}


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``90min``, ``2w``, ``45s``; ``m`` (minutes or months?), months and years are refused."""
    m = _AGE.match(text.strip().lower())
    if m and m.group(2) in _AMBIGUOUS:
        n, unit = int(m.group(1)), m.group(2)
        hint = (f"(minutes or months?): write {n}min for minutes, or days such as {n * 30}d" if unit == "m"
                else f"({_AMBIGUOUS[unit]} vary in length): write days, e.g. {n * (365 if unit[0] == 'y' else 30)}d")
        raise click.BadParameter(f"'{text}' is ambiguous {hint}", param_hint="--older-than")
    if not m or m.group(2) not in _UNITS:
        raise click.BadParameter(f"'{text}' is not an age like 30d, 12h, 90min, 2w or 45s", param_hint="--older-than")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def _finished_before(store: RunStore, cutoff: datetime) -> list[tuple[str, str, str]]:
    finished = [s.value for s in RunStatus if s.finished]
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(RunRow.id, RunRow.workflow, RunRow.created_at)
            .where(RunRow.created_at < cutoff, RunRow.status.in_(finished)).order_by(RunRow.created_at))]


@click.command("prune")
@click.option("--older-than", "older_than", required=True, metavar="AGE",
              help="age such as 30d, 12h, 90min, 2w (s, min, h, d, w; 'm' is refused as ambiguous)")
@click.option("--dry-run", is_flag=True, help="list what would be deleted, delete nothing")
@click.option("-y", "--yes", is_flag=True, help="do not ask for confirmation")
def prune_cmd(older_than: str, dry_run: bool, yes: bool) -> None:
    """Delete finished runs created more than AGE ago, with their steps, events and artifacts."""
    cutoff: datetime = utcnow() - parse_age(older_than)
    store = _store()
    doomed = _finished_before(store, cutoff)
    when = f"created before {cutoff.isoformat(timespec='seconds')}Z"
    n = len(doomed)
    what = f"{n} finished run{'s' if n != 1 else ''} {when}"
    if not doomed:
        click.echo(f"nothing to delete: no finished runs {when} in {where(store)}")
        return
    if dry_run:
        click.echo(f"would delete {what}:")
        for rid, workflow, created in doomed:
            click.echo(f"  {rid[:display.SHORT_ID]}  {created.isoformat(sep=' ', timespec='seconds')}  {workflow}")
        return
    if not yes:
        try:
            ok = click.confirm(f"delete {what}, with their artifacts, from {where(store)}?", default=False,
                               err=True)
        except click.Abort:
            ok = False
            click.echo("", err=True)
        if not ok:
            click.echo("nothing deleted (pass --yes to skip this question, --dry-run to list them)", err=True)
            sys.exit(1)
    deleted = sum(1 for rid, _, _ in doomed if store.delete_run(rid))
    click.echo(f"deleted {deleted} run{'s' if deleted != 1 else ''} {when}")


COMMANDS = [runs_cmd, show_cmd, prune_cmd]
