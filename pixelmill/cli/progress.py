"""Live per-step progress for ``pixelmill run`` on a terminal.

Steps may run in parallel, so events arrive from several threads and interleave: each step gets its own number
when it is first seen (never two ``[3/5]``), and a ``\\r`` progress line is blanked out before anything else is
printed, so no characters of a longer line are left behind.
"""

from __future__ import annotations

import threading

import click

from ..events import Event, EventKind

_MARK = {"succeeded": "ok", "cached": "cached", "skipped": "skipped", "failed": "FAILED", "blocked": "BLOCKED",
         "cancelled": "cancelled", "interrupted": "interrupted"}


class Progress:
    def __init__(self, loaded, echo=None):
        self.total = len(loaded.order)
        self._numbers: dict[str, int] = {}
        self._partial = 0  # length of the unfinished \r line on screen (0: the cursor is at a line start)
        self._failed = False
        self._lock = threading.Lock()
        self._echo = echo or (lambda text, nl=True: click.echo(text, err=True, nl=nl))

    def _number(self, step_id: str) -> str:
        n = self._numbers.setdefault(step_id, len(self._numbers) + 1)
        return f"[{n}/{self.total}]"

    def _clear(self) -> None:
        if self._partial:
            self._echo("\r" + " " * self._partial + "\r", nl=False)
            self._partial = 0

    def _line(self, text: str) -> None:
        self._clear()
        self._echo(text)

    def on_event(self, event: Event) -> None:
        with self._lock:
            self._on_event(event)

    def _on_event(self, event: Event) -> None:
        d, sid = event.data, event.step_id
        if event.kind is EventKind.STEP_STARTED:
            extra = f" (attempt {d['attempt']})" if d.get("attempt", 1) > 1 else ""
            self._line(f"{self._number(sid)} {sid} ({d.get('node')}){extra} ...")
        elif event.kind is EventKind.STEP_PROGRESS:
            total = d.get("total")
            frac = f"{d['value']:g}/{total:g}" if total else f"{d['value']:g}"
            text = f"    {sid}: {frac} {d.get('message', '')}".rstrip()
            self._clear()
            self._echo(text, nl=False)
            self._partial = len(text)
        elif event.kind is EventKind.STEP_RETRYING:
            self._line(f"    {sid}: retrying in {d['delay_s']:g} s ({d['error']['message']})")
        elif event.kind in (EventKind.STEP_FINISHED, EventKind.STEP_FAILED, EventKind.STEP_SKIPPED):
            status = d.get("status", "")
            if status in ("failed", "blocked"):
                self._failed = True
            head = "   " if sid in self._numbers else self._number(sid)  # steps that never started get a number here
            if d.get("reused"):
                mark, why = "reused from the earlier run", ""
            elif event.kind is EventKind.STEP_SKIPPED and status == "cancelled":  # never started
                mark, why = "not run", (": an earlier step failed" if self._failed else ": the run was cancelled")
            else:
                mark = _MARK.get(status, status)
                why = f": {d['reason']}" if d.get("reason") else (f": {d['error']['message']}" if d.get("error") else "")
            took = f" {d['duration_s']:.2f} s" if d.get("duration_s") else ""
            self._line(f"{head} {sid}: {mark}{took}{why}")
