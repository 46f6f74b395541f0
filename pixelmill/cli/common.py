"""Helpers shared by the CLI modules."""

from __future__ import annotations

import json
import sys

import click

from ..problems import WorkflowInvalid
from ..registry import Registry


def registry() -> Registry:
    reg = Registry.from_entry_points()
    for msg in reg.load_errors:
        click.echo(f"warning: {msg}", err=True)
    return reg


def print_problems(exc: WorkflowInvalid) -> None:
    for problem in exc.problems:
        click.echo(str(problem), err=True)
    n = len(exc.problems)
    click.echo(f"{n} problem{'s' if n != 1 else ''} found", err=True)


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def is_tty() -> bool:
    return sys.stderr.isatty()
