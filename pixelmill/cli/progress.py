"""Live per-step progress for ``pixelmill run`` on a terminal."""

from __future__ import annotations

import click

from ..events import Event, EventKind

_MARK = {"succeeded": "ok", "cached": "cached", "skipped": "skipped", "failed": "FAILED", "blocked": "BLOCKED",
         "cancelled": "cancelled"}


class Progress:
    def __init__(self, loaded):
        self.total = len(loaded.order)
        self.done = 0

    def on_event(self, event: Event) -> None:
        d = event.data
        if event.kind is EventKind.STEP_STARTED:
            extra = f" (attempt {d['attempt']})" if d.get("attempt", 1) > 1 else ""
            click.echo(f"[{self.done + 1}/{self.total}] {event.step_id} ({d.get('node')}){extra} ...", err=True)
        elif event.kind is EventKind.STEP_PROGRESS:
            total = d.get("total")
            frac = f"{d['value']:g}/{total:g}" if total else f"{d['value']:g}"
            click.echo(f"\r    {event.step_id}: {frac} {d.get('message', '')}".rstrip(), err=True, nl=False)
            if total and d["value"] >= total:
                click.echo("", err=True)
        elif event.kind is EventKind.STEP_RETRYING:
            click.echo(f"    {event.step_id}: retrying in {d['delay_s']:g} s ({d['error']['message']})", err=True)
        elif event.kind in (EventKind.STEP_FINISHED, EventKind.STEP_FAILED, EventKind.STEP_SKIPPED):
            self.done += 1
            status = d.get("status", "")
            took = f" {d['duration_s']:.2f} s" if d.get("duration_s") else ""
            why = f": {d['reason']}" if d.get("reason") else (f": {d['error']['message']}" if d.get("error") else "")
            click.echo(f"    {event.step_id}: {_MARK.get(status, status)}{took}{why}", err=True)
