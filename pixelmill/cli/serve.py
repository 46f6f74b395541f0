"""``pixelmill serve``: the long-running service (webhooks, API, schedules, worker pool) under waitress."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import click

from .common import registry


@click.command("serve")
@click.option("--workflows", "workflows_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="folder of workflow files (default: $PIXELMILL_WORKFLOWS or ./workflows)")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on; anything but loopback needs PIXELMILL_API_TOKEN")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="port (0 picks a free one)")
@click.option("--workers", type=click.IntRange(1, 256), default=None, help="runs executed at once ($PIXELMILL_WORKERS)")
def serve_cmd(workflows_dir: Path | None, host: str, port: int, workers: int | None) -> None:
    """Serve workflows: n8n-style webhooks, the REST API (/api/v1), schedules and a durable run queue."""
    from ..server.app import create_app
    from ..server.auth import check_exposure
    from ..server.config import ConfigError, ServerConfig
    from ..server.runner import serve

    try:
        config = ServerConfig.from_env(workflows_dir=workflows_dir, workers=workers)
        check_exposure(host, config.api_token)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if config.workflows_dir is None:
        config.workflows_dir = Path("workflows")
    if not config.workflows_dir.is_dir():
        click.echo(f"error: workflow folder '{config.workflows_dir}' does not exist (use --workflows DIR)", err=True)
        sys.exit(2)
    app = create_app(config, registry=registry())
    try:
        serve(app, host, port)
    except OSError as exc:
        busy = exc.errno == errno.EADDRINUSE
        hint = f"; choose another port with --port (e.g. --port {port + 1}) or stop what listens there" if busy else ""
        click.echo(f"error: cannot listen on {host}:{port}: {exc}{hint}", err=True)
        app.extensions["pixelmill"].close()
        sys.exit(1)


COMMANDS = [serve_cmd]
