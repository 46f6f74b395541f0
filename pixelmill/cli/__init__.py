"""The ``pixelmill`` command. Each sub-command group lives in its own module."""

from __future__ import annotations

import logging
import os

import click

from .. import __version__, importcache, lazyimports

ONE_SHOT = frozenset({"run", "retry"})


def standins_for(command: str | None) -> dict:
    """The import stand-ins a CLI command runs with: all of them for a one-shot command, the scipy ones
    for the others (``serve`` and ``worker`` live long and may compile: they import the real dynamo)."""
    return lazyimports.STANDINS if command in ONE_SHOT else lazyimports.SCIPY_STANDINS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pixelmill")
@click.option("-v", "--verbose", count=True, help="more log output (-vv for debug)")
def main(verbose: int) -> None:
    """Turn YAML workflows into AI image pipelines: prompt, generate, caption, label, post."""
    importcache.install()  # before anything imports transformers: its import table from the disk cache
    # rarely used modules the libraries import at load time run on first use: scipy.stats/integrate/optimize
    # for every command; torch._dynamo's stand-ins only for the one-shot commands, whose cold start they
    # shorten; long-lived processes (serve, worker), which may compile, import the real dynamo as written
    lazyimports.install(standins=standins_for(click.get_current_context().invoked_subcommand))
    level = logging.WARNING - 10 * min(verbose, 2)
    if not verbose:
        # transformers and diffusers warn on import about optional extras we deliberately leave out
        # (torchvision, accelerate); keep the terminal for pixelmill's own output unless -v is given.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _register() -> None:
    from . import history, inspect, models, retry, serve, worker, workflows

    for module in (workflows, history, serve, worker, models, inspect, retry):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
