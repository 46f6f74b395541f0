"""``pixelmill retry RUN_ID``: run a finished run again from where it failed, here.

Like ``POST /api/v1/runs/{id}/retry``: a new run with ``retry_of`` set, the same inputs and trigger,
the steps that succeeded reused. A post whose delivery was not confirmed is finished through the
posting ledger (same idempotency key / record key) instead of being posted a second time, which a
new ``pixelmill run`` would do.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..loader import load_file
from ..problems import WorkflowInvalid
from ..rerun import NotRetryable, create_retry, reused_outputs
from ..runtime import Runtime
from .common import is_tty, print_problems, registry
from .oneshot import close_frozen, one_shot
from .progress import Progress
from .workflows import EXIT, _report


@click.command("retry")
@click.argument("run_id")
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="the workflow file to use (default: the file the run was started from)")
@click.option("--json", "as_json", is_flag=True, help="print the new run's result as JSON")
@one_shot()
def retry_cmd(run_id: str, file: Path | None, as_json: bool) -> None:
    """Retry a failed, blocked, cancelled or interrupted run: its succeeded steps are reused and a post
    that may already exist is finished, not posted twice."""
    runtime = Runtime.create(registry=registry())
    runtime.store.recover_interrupted()
    try:
        old = runtime.store.get_run(run_id)
        if old is None:
            click.echo(f"no run {run_id} in {runtime.settings.db_url} (is PIXELMILL_HOME the one the run used? "
                       "`pixelmill runs` lists the runs there)", err=True)
            sys.exit(2)
        path = file or (Path(old["workflow_file"]) if old.get("workflow_file") else None)
        if path is None or not path.is_file():
            click.echo(f"run {run_id}: its workflow file {str(path) if path else '(unknown)'} is not there; "
                       "pass it with --file", err=True)
            sys.exit(2)
        try:
            loaded = load_file(path, runtime.registry)
        except WorkflowInvalid as exc:
            print_problems(exc)
            sys.exit(2)
        if loaded.name != old["workflow"]:
            click.echo(f"{path} holds workflow '{loaded.name}', but run {run_id} is of '{old['workflow']}'", err=True)
            sys.exit(2)
        try:
            new_id = create_retry(runtime.store, old, loaded)
        except NotRetryable as exc:
            click.echo(str(exc), err=True)
            sys.exit(2)
        reuse = reused_outputs(runtime.store, run_id, loaded)
        if not as_json:
            click.echo(f"retrying run {run_id} as {new_id}" + (f" (reusing {', '.join(reuse)})" if reuse else ""),
                       err=True)
        unsubscribe = runtime.bus.subscribe(Progress(loaded).on_event) if (is_tty() and not as_json) else None
        try:
            result = runtime.executor.execute(loaded, new_id, inputs=old.get("inputs") or {},
                                              trigger=old.get("trigger") or {}, reuse=reuse)
        finally:
            if unsubscribe:
                unsubscribe()
        if result is None:  # claimed by another process meanwhile (a serve sweeping the same store)
            click.echo(f"run {new_id} was picked up by another pixelmill process", err=True)
            sys.exit(1)
        _report(result, as_json, runtime.settings.artifacts_root)
        sys.exit(EXIT.get(result.status, 1))
    finally:
        close_frozen(runtime.close)


COMMANDS = [retry_cmd]
