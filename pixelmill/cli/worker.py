"""``pixelmill worker``: a Celery worker process that executes runs sent by ``pixelmill serve`` in celery mode."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .common import registry


def pin_device(device: str) -> None:
    """``cuda:N`` makes GPU N the only one this process sees (before torch initialises CUDA), so nodes asking
    for ``cuda`` use it; ``cpu`` hides every GPU."""
    if device.startswith("cuda:"):
        os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
    elif device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


@click.command("worker")
@click.option("--workflows", "workflows_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="folder of workflow files (default: $PIXELMILL_WORKFLOWS or ./workflows)")
@click.option("--queues", "-Q", default="default,gpu", show_default=True,
              help="comma-separated queues to take runs from (a workflow's `queue:`, else gpu or default)")
@click.option("--device", default="auto", show_default=True,
              help="cuda:N pins this worker to GPU N (one worker per GPU); cpu hides the GPUs")
@click.option("--name", default=None, help="Celery node name (default: celery@HOSTNAME)")
def worker_cmd(workflows_dir: Path | None, queues: str, device: str, name: str | None) -> None:
    """Execute runs from the broker ($PIXELMILL_BROKER_URL) against the shared store ($PIXELMILL_DB_URL).

    SIGTERM: the current run gets $PIXELMILL_SHUTDOWN_GRACE seconds (10) to finish, else it is handed back."""
    pin_device(device)
    start_worker(registry(), workflows_dir, queues, device, name)


def start_worker(reg, workflows_dir: Path | None, queues: str, device: str, name: str | None) -> None:
    from ..runtime import Runtime
    from ..server.workflows import WorkflowSet
    from ..settings import Settings
    from ..workers.app import CelerySettings
    from ..workers.worker import Worker

    try:
        celery_settings = CelerySettings.from_env()
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    folder = workflows_dir or Path(os.environ.get("PIXELMILL_WORKFLOWS") or "workflows")
    if not folder.is_dir():
        click.echo(f"error: workflow folder '{folder}' does not exist (use --workflows DIR)", err=True)
        sys.exit(2)
    qs = [q.strip() for q in queues.split(",") if q.strip()]
    settings = Settings.from_env()
    runtime = Runtime.create(settings, registry=reg)
    beat = float(os.environ.get("PIXELMILL_HEARTBEAT_INTERVAL") or 2.0)
    grace = float(os.environ.get("PIXELMILL_SHUTDOWN_GRACE") or 10.0)
    worker = Worker(runtime, WorkflowSet(folder, reg), queues=qs, device=device, settings=celery_settings,
                    heartbeat_interval=beat, stale_after=max(3 * beat, 5.0), shutdown_grace=grace)
    worker.run(name=name)


COMMANDS = [worker_cmd]
