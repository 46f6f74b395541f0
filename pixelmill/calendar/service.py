"""The calendar service the server holds: it keeps the ledger in line with the workflow files, and its
clock, ``tick()``, does what is due (a thread calls it every few seconds in the server; tests call it with
a clock they move).

At each tick: finished post runs give their entries their outcome; an entry that needs approval gets its
draft run ``lead`` before its slot; at the slot an approved entry (or one of a workflow without approval)
gets its post run, once. An entry that needs approval and is not approved at its slot becomes ``missed``
(logged, recorded in ``calendar_log``), never posted. A slot that passed more than ``misfire_grace``
seconds ago (the service was down) follows the workflow's misfire policy: ``post_late`` posts it once
now, ``skip`` marks it missed.

The parts: ``sync`` (entries from the files), ``runs`` (the draft and post runs an entry makes, phases,
outcomes), ``edits`` (what people do: list, add, move, approve, skip, regenerate), ``ledger`` (the tables
and their conditional write).
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from . import ledger as L
from .edits import CalendarError, Edits
from .runs import EntryRuns
from .sync import sync_entries

log = logging.getLogger(__name__)

__all__ = ["CalendarService", "CalendarError"]


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class CalendarService:
    def __init__(self, runtime, workflows, run_queue, *, now=None, misfire_grace: float = 30.0,
                 tick_s: float | None = None):
        self.runtime = runtime
        self.workflows = workflows
        self.queue = run_queue
        self.now = now or _utc_now
        self.misfire_grace = misfire_grace
        self.tick_s = tick_s if tick_s is not None else float(os.environ.get("PIXELMILL_CALENDAR_TICK", "5"))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._synced = None  # the workflow catalog last synced (a reload, by any path, makes a new one)
        L.create_tables(runtime.store.engine)
        self.runs = EntryRuns(runtime.store, run_queue, self._clock)
        self.edits = Edits(runtime.store, workflows, self.runs, self._clock)

    def _clock(self) -> datetime:
        return self.now()  # looked up at each call: the clock may be replaced after construction

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, ticking: bool = True) -> None:
        self.sync()
        if ticking and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="pixelmill-calendar", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _loop(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # the calendar keeps ticking whatever one entry does
                log.exception("calendar tick failed")
            if self._stop.wait(self.tick_s):
                return

    # -- entries from the workflow files -------------------------------------------------------

    def sync(self) -> dict:
        """Bring the ledger in line with the served workflows' entries; returns counts."""
        self._synced = getattr(self.workflows, "catalog", None)
        return sync_entries(self.runtime.store, self.workflows, self._clock)

    # -- the clock -------------------------------------------------------------------------------

    def tick(self) -> dict:
        """Do everything due at ``now()``: reconcile finished post runs, draft, post, report missed entries."""
        if getattr(self.workflows, "catalog", None) is not self._synced:
            self.sync()  # the workflows were reloaded (SIGHUP, API, a file watcher): re-read their entries
        now = self.now()
        done = {"drafted": [], "posted": [], "missed": []}
        self.runs.reconcile()
        with self.runtime.store.engine.connect() as conn:
            rows = list(conn.execute(select(L.ENTRIES).where(L.ENTRIES.c.status.in_(L.OPEN),
                                                             L.ENTRIES.c.post_run_id.is_(None))
                                     .order_by(L.ENTRIES.c.slot)))
        for row in rows:
            loaded = self.workflows.get(row.workflow)
            if loaded is None:
                continue
            slot = L.aware(row.slot)
            key = f"{row.workflow}/{row.entry_id}"
            if slot <= now:
                late = (now - slot).total_seconds() > self.misfire_grace
                policy = loaded.calendar.misfire(loaded.workflow.on.schedule)
                if row.needs_approval and row.status != L.APPROVED:
                    why = "not approved by its slot" if row.status == L.GENERATED or not late else \
                          "not approved by its slot (the service was down at the slot)"
                    if self.runs.miss(row, now, why):
                        done["missed"].append(key)
                elif late and policy == "skip":
                    if self.runs.miss(row, now, f"the slot passed {int((now - slot).total_seconds())} s ago while "
                                                "the service was down (misfire: skip)"):
                        done["missed"].append(key)
                elif self.runs.post(row, loaded, now, late):
                    done["posted"].append(key)
            elif row.needs_approval and row.status == L.PLANNED and row.draft_run_id is None and \
                    slot - timedelta(seconds=loaded.calendar.lead_s) <= now:
                if self.runs.draft(row, loaded, dict(row.inputs or {})):
                    done["drafted"].append(key)
        return done

    # -- what people do (API and dashboard): edits.py ---------------------------------------------

    def list(self, workflow: str | None = None, start: datetime | None = None, end: datetime | None = None) -> list:
        return self.edits.list(workflow, start, end)

    def log(self, limit: int = 100) -> list[dict]:
        return self.edits.log(limit)

    def get(self, workflow: str, entry_id: str) -> dict:
        return self.edits.get(workflow, entry_id)

    def add(self, workflow: str, when, *, inputs: dict | None = None, target: str | None = None,
            approved: bool = False, entry_id: str | None = None, tz: str | None = None) -> dict:
        return self.edits.add(workflow, when, inputs=inputs, target=target, approved=approved, entry_id=entry_id,
                              tz=tz)

    def move(self, workflow: str, entry_id: str, when, tz: str | None = None) -> dict:
        return self.edits.move(workflow, entry_id, when, tz)

    def approve(self, workflow: str, entry_id: str) -> dict:
        return self.edits.approve(workflow, entry_id)

    def skip(self, workflow: str, entry_id: str) -> dict:
        return self.edits.skip(workflow, entry_id)

    def regenerate(self, workflow: str, entry_id: str, inputs: dict | None = None) -> dict:
        """A new draft with (edited) inputs; it replaces the previous draft and needs approval again."""
        return self.edits.regenerate(workflow, entry_id, inputs)
