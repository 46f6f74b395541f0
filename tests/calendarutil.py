"""Helpers of the calendar tests: a clock tests move, and a calendar service on a real store and queue."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pixelmill.calendar.service import CalendarService
from pixelmill.runtime import Runtime
from pixelmill.server.queue import RunQueue
from pixelmill.server.workflows import WorkflowSet
from pixelmill.settings import Settings


def workflow(name: str, calendar: str = "", at: str = "", extra_steps: str = "") -> str:
    """A prompt + outbox post workflow; the post waits for the 'post' phase."""
    on = ""
    if calendar or at:
        on = "on:\n" + (f"  calendar:\n{calendar}" if calendar else "") + (f"  at:\n{at}" if at else "")
    return f"""\
name: {name}
inputs:
  subject: {{type: string, default: a red circle}}
  seed: {{type: integer, default: 1}}
{on}steps:
  - id: prompt
    node: prompt
    with:
      template: "{{{{ subject }}}} #{{{{ n }}}}"
      vars: {{subject: "${{{{ inputs.subject }}}}", n: "${{{{ inputs.seed }}}}"}}
  - id: post
    node: post_social
    if: ${{{{ trigger.calendar.phase == 'post' }}}}
    config: {{target: outbox}}
    with:
      text: ${{{{ steps.prompt.outputs.text }}}}
{extra_steps}"""


class Clock:
    def __init__(self, t: datetime):
        self.t = t

    def __call__(self) -> datetime:
        return self.t

    def set(self, t: datetime) -> None:
        self.t = t

    def advance(self, **kw) -> None:
        self.t += timedelta(**kw)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


class Instance:
    """One 'server process' worth of calendar: its own engine, store, queue and calendar service."""

    def __init__(self, home: Path, folder: Path, registry, clock, misfire_grace: float = 30.0, start=True):
        settings = Settings.from_env(home=home)
        self.runtime = Runtime.create(settings, registry=registry)
        self.workflows = WorkflowSet(folder, registry)
        self.load = self.workflows.load()
        self.queue = RunQueue(self.runtime, self.workflows, workers=1, sweep_interval=0.2)
        if start:
            self.queue.start()
        self.calendar = CalendarService(self.runtime, self.workflows, self.queue, now=clock,
                                        misfire_grace=misfire_grace)
        self.calendar.sync()

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until no run is queued or running, then let the calendar take the outcomes."""
        store = self.runtime.store
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = store.count_runs(status="queued") + store.count_runs(status="running")
            if not busy:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("runs did not finish")
        self.calendar.tick()

    def entry(self, workflow: str, entry_id: str) -> dict:
        return self.calendar.get(workflow, entry_id)

    def close(self) -> None:
        self.calendar.stop()
        self.queue.stop(timeout=5)
        self.runtime.close()


def posts(home: Path) -> list[str]:
    """Texts of the posts in the outbox (one folder with a post.json per post)."""
    import json

    return sorted(json.loads(p.read_text())["text"] for p in (home / "outbox").rglob("post.json"))
