"""The runs a calendar entry makes, and the outcome the entry takes from them.

Phases. Every run an entry makes has ``trigger.calendar = {entry, slot, phase, target}``:

* ``phase: "draft"`` - made ``lead`` before the slot for entries that need approval. The workflow's
  posting step(s) carry ``if: ${{ trigger.calendar.phase == 'post' }}`` (the loader refuses a workflow with
  ``approval: true`` and no step reading the phase), so a draft run makes the image and caption and posts
  nothing. The engine knows nothing of calendars: the rule is an ordinary ``if:`` in the file.
* ``phase: "post"`` - made at the slot, once (the ledger's claim), only for approved entries (or entries of
  a workflow without approval). When a draft exists the post run is a retry of it (``retry_of``): the
  approved steps' outputs are reused, not generated again, and only the skipped posting step runs.

Each run is created in the same transaction as the entry's claim, so of several processes exactly one
makes it. An entry that is not posted becomes ``missed`` or ``failed``, recorded in ``calendar_log``.
When its post run finishes, the entry takes that run's outcome (``reconcile``).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update

from ..db import RunRow
from ..inputs import InputError, resolve_inputs
from . import ledger as L

log = logging.getLogger("pixelmill.calendar.service")
FINAL_RUN = {"succeeded": L.POSTED, "failed": L.FAILED, "blocked": L.FAILED, "cancelled": L.FAILED}


class _Lost(Exception):
    """Another process changed the entry first: the transaction is rolled back."""


class EntryRuns:
    """Drafts, posts, misses and failures of entries, and the outcomes of their post runs."""

    def __init__(self, store, run_queue, now):
        self.store = store
        self.queue = run_queue
        self.now = now  # the clock, called each time

    def _trigger(self, row, phase: str) -> dict:
        return {"kind": "calendar", "calendar": {"entry": row.entry_id, "slot": L.aware(row.slot).isoformat(),
                                                 "phase": phase, "target": row.target}}

    def draft(self, row, loaded, inputs: dict, statuses=(L.PLANNED,), **extra) -> str | None:
        def write(conn, run_id: str, resolved: dict) -> bool:
            # the claim first: on SQLite it takes the write lock, so a loser sees the winner's row
            if not L.update_entry(conn, row.workflow, row.entry_id, row.version, set(statuses), self.now(),
                                  status=L.GENERATED, draft_run_id=run_id, inputs=resolved, note="", **extra):
                return False
            self.store.create_run(loaded.name, inputs=resolved, trigger=self._trigger(row, "draft"),
                                  trigger_kind="calendar", workflow_file=loaded.file, run_id=run_id, conn=conn)
            return True

        run_id = self._new_run(row, loaded, inputs, write)
        if run_id:
            log.info("calendar %s/%s: draft run %s for %s", row.workflow, row.entry_id, run_id, row.slot)
        return run_id

    def post(self, row, loaded, now: datetime, late: bool) -> str | None:
        allowed = {L.APPROVED} if row.needs_approval else {L.PLANNED, L.APPROVED, L.GENERATED}
        retry_of = row.draft_run_id if row.draft_run_id and self.store.get_run(row.draft_run_id) else None
        note = f"posted late after downtime (slot {L.aware(row.slot).isoformat()})" if late else ""

        def write(conn, run_id: str, resolved: dict) -> bool:
            if not L.update_entry(conn, row.workflow, row.entry_id, row.version, allowed, self.now(),
                                  post_run_id=run_id, note=note):
                return False
            trigger = self._trigger(row, "post")
            if late:
                trigger["calendar"]["late"] = True
            self.store.create_run(loaded.name, inputs=resolved, trigger=trigger, trigger_kind="calendar",
                                  workflow_file=loaded.file, run_id=run_id, retry_of=retry_of, conn=conn)
            if late:
                L.log_event(conn, row.workflow, row.entry_id, "posted_late", note, now)
            return True

        run_id = self._new_run(row, loaded, row.inputs or {}, write)
        if run_id:
            log.info("calendar %s/%s: post run %s%s", row.workflow, row.entry_id, run_id, " (late)" if late else "")
        return run_id

    def _new_run(self, row, loaded, inputs: dict, write) -> str | None:
        """Resolve ``inputs``, then in one transaction ``write(conn, run_id, resolved)`` (the entry's claim and
        its run; False when another process changed the entry first: nothing is written), then queue the
        run. Its id, or None when the claim was lost or the inputs are invalid (the entry then fails)."""
        run_id = uuid.uuid4().hex
        try:
            resolved = resolve_inputs(loaded.workflow.inputs, inputs)
            with self.store.writing() as conn:
                if not write(conn, run_id, resolved):
                    raise _Lost
        except _Lost:
            return None
        except InputError as exc:
            self.fail(row, f"inputs are invalid: {exc}")
            return None
        self.queue.enqueue(run_id)
        return run_id

    def miss(self, row, now: datetime, why: str) -> bool:
        message = f"entry {row.entry_id} of {row.workflow} at {L.aware(row.slot).isoformat()} was not posted: {why}"
        with self.store.writing() as conn:
            if not L.update_entry(conn, row.workflow, row.entry_id, row.version, set(L.OPEN), self.now(),
                                  status=L.MISSED, note=why):
                return False
            L.log_event(conn, row.workflow, row.entry_id, "missed", message, now)
        log.warning("calendar: %s", message)
        return True

    def fail(self, row, why: str) -> None:
        with self.store.writing() as conn:
            if L.update_entry(conn, row.workflow, row.entry_id, row.version, set(L.OPEN), self.now(),
                              status=L.FAILED, note=why):
                L.log_event(conn, row.workflow, row.entry_id, "failed", why, self.now())
        log.error("calendar %s/%s: %s", row.workflow, row.entry_id, why)

    def reconcile(self) -> None:
        """Entries whose post run finished take its outcome (read from the store: any process may have run
        it). A failed post retried later (``POST /api/v1/runs/{id}/retry``) takes the outcome of the latest
        retry in its chain, for a week after the failure."""
        since = L.utcnow_naive(self.now() - timedelta(days=7))
        e = L.ENTRIES
        with self.store.engine.connect() as conn:
            rows = list(conn.execute(select(e).where(e.c.post_run_id.is_not(None), or_(
                e.c.status.in_(L.OPEN), and_(e.c.status == L.FAILED, e.c.updated_at >= since)))))
            outcomes = {row.id: self._latest(conn, row.post_run_id) for row in rows}
        for row in rows:
            run = outcomes[row.id]
            status = FINAL_RUN.get(run["status"]) if run else L.FAILED
            if status is None or status == row.status:
                continue
            note = "" if status == L.POSTED else ((run or {}).get("error") or {}).get("message", "the run is gone")
            if row.status == L.FAILED:
                note = f"posted by retry run {run['id']}"
            with self.store.writing() as conn:
                conn.execute(update(e).where(e.c.id == row.id, e.c.version == row.version)
                             .values(status=status, note=(row.note + " " + note).strip()[:2000],
                                     version=row.version + 1, updated_at=L.utcnow_naive(self.now())))

    @staticmethod
    def _latest(conn, run_id: str) -> dict | None:
        """The last run in the retry chain that starts at ``run_id``."""
        runs = RunRow.__table__
        cols = (runs.c.id, runs.c.status, runs.c.error)
        run = conn.execute(select(*cols).where(runs.c.id == run_id)).mappings().first()
        for _ in range(100):
            if run is None:
                return None
            nxt = conn.execute(select(*cols).where(runs.c.retry_of == run["id"])
                               .order_by(runs.c.created_at.desc()).limit(1)).mappings().first()
            if nxt is None:
                return dict(run)
            run = nxt
        return dict(run)
