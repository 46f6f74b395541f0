"""Drafting, posting and reporting calendar entries, driven by ``tick()`` (a thread calls it every few
seconds in the server; tests call it with a clock they move).

Phases. Every run an entry makes has ``trigger.calendar = {entry, slot, phase, target}``:

* ``phase: "draft"`` - made ``lead`` before the slot for entries that need approval. The workflow's
  posting step(s) carry ``if: ${{ trigger.calendar.phase == 'post' }}`` (the loader refuses a workflow with
  ``approval: true`` and no step reading the phase), so a draft run makes the image and caption and posts
  nothing. The engine knows nothing of calendars: the rule is an ordinary ``if:`` in the file.
* ``phase: "post"`` - made at the slot, once (the ledger's claim), only for approved entries (or entries of
  a workflow without approval). When a draft exists the post run is a retry of it (``retry_of``): the
  approved steps' outputs are reused, not generated again, and only the skipped posting step runs.

An entry that needs approval and is not approved at its slot becomes ``missed`` (logged, recorded in
``calendar_log``), never posted. A slot that passed more than ``misfire_grace`` seconds ago (the service
was down) follows the workflow's misfire policy: ``post_late`` posts it once now, ``skip`` marks it missed.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..db import RunRow
from ..inputs import InputError, resolve_inputs
from . import ledger as L
from .entries import parse_when

log = logging.getLogger(__name__)
FINAL_RUN = {"succeeded": L.POSTED, "failed": L.FAILED, "blocked": L.FAILED, "cancelled": L.FAILED}


class CalendarError(Exception):
    """A request the calendar refuses: ``status`` is the HTTP status, ``code`` a short machine word."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Lost(Exception):
    """Another process changed the entry first: the transaction is rolled back."""


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
        added = updated = removed = 0
        self._synced = getattr(self.workflows, "catalog", None)
        now = L.utcnow_naive(self.now())
        store = self.runtime.store
        for loaded in self.workflows.all():
            cal = loaded.calendar
            wanted = {e.id: e for e in cal.entries}
            with store.engine.connect() as conn:
                rows = {r.entry_id: r for r in conn.execute(select(L.ENTRIES).where(
                    L.ENTRIES.c.workflow == loaded.name))}
            for entry in cal.entries:
                row = rows.get(entry.id)
                slot = L.utcnow_naive(entry.slot)
                values = dict(slot=slot, inputs=entry.inputs, target=entry.target, where=entry.where,
                              needs_approval=cal.settings.approval)
                if row is None:
                    try:
                        with store.writing() as conn:
                            conn.execute(L.ENTRIES.insert().values(
                                workflow=loaded.name, entry_id=entry.id, status=L.APPROVED if entry.approved
                                else L.PLANNED, source="file", version=1, updated_at=now, note="", **values))
                        added += 1
                    except IntegrityError:  # another process added it a moment ago
                        pass
                elif row.source == "file" and row.status == L.PLANNED and row.post_run_id is None and \
                        (row.slot, row.inputs, row.target, bool(row.needs_approval)) != \
                        (slot, entry.inputs, entry.target, cal.settings.approval):
                    updated += self._update(loaded.name, entry.id, row.version, {L.PLANNED}, **values)
            for entry_id, row in rows.items():
                if entry_id not in wanted and row.source == "file" and row.status in L.OPEN and \
                        row.post_run_id is None:
                    removed += self._update(loaded.name, entry_id, row.version, set(L.OPEN), status=L.SKIPPED,
                                            note="removed from the calendar file")
        return {"added": added, "updated": updated, "removed": removed}

    def _update(self, workflow, entry_id, version, statuses, conn=None, **values) -> int:
        """The one conditional write every change goes through: 1 if this call won, 0 if not."""
        stmt = update(L.ENTRIES).where(
            L.ENTRIES.c.workflow == workflow, L.ENTRIES.c.entry_id == entry_id, L.ENTRIES.c.version == version,
            L.ENTRIES.c.status.in_(sorted(statuses)), L.ENTRIES.c.post_run_id.is_(None),
        ).values(version=version + 1, updated_at=L.utcnow_naive(self.now()), **values)
        if conn is not None:
            return conn.execute(stmt).rowcount
        with self.runtime.store.writing() as conn:
            return conn.execute(stmt).rowcount

    # -- the clock -------------------------------------------------------------------------------

    def tick(self) -> dict:
        """Do everything due at ``now()``: reconcile finished post runs, draft, post, report missed entries."""
        if getattr(self.workflows, "catalog", None) is not self._synced:
            self.sync()  # the workflows were reloaded (SIGHUP, API, a file watcher): re-read their entries
        now = self.now()
        done = {"drafted": [], "posted": [], "missed": []}
        self._reconcile()
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
                    if self._miss(row, now, why):
                        done["missed"].append(key)
                elif late and policy == "skip":
                    if self._miss(row, now, f"the slot passed {int((now - slot).total_seconds())} s ago while "
                                            "the service was down (misfire: skip)"):
                        done["missed"].append(key)
                elif self._post(row, loaded, now, late):
                    done["posted"].append(key)
            elif row.needs_approval and row.status == L.PLANNED and row.draft_run_id is None and \
                    slot - timedelta(seconds=loaded.calendar.lead_s) <= now:
                if self._draft(row, loaded, dict(row.inputs or {})):
                    done["drafted"].append(key)
        return done

    def _trigger(self, row, phase: str) -> dict:
        return {"kind": "calendar", "calendar": {"entry": row.entry_id, "slot": L.aware(row.slot).isoformat(),
                                                 "phase": phase, "target": row.target}}

    def _draft(self, row, loaded, inputs: dict, statuses=(L.PLANNED,), **extra) -> str | None:
        store = self.runtime.store
        run_id = uuid.uuid4().hex
        try:
            resolved = resolve_inputs(loaded.workflow.inputs, inputs)
            with store.writing() as conn:
                # the claim first: on SQLite it takes the write lock, so a loser sees the winner's row
                if not self._update(row.workflow, row.entry_id, row.version, set(statuses), conn=conn,
                                    status=L.GENERATED, draft_run_id=run_id, inputs=resolved, note="", **extra):
                    raise _Lost
                store.create_run(loaded.name, inputs=resolved, trigger=self._trigger(row, "draft"),
                                 trigger_kind="calendar", workflow_file=loaded.file, run_id=run_id, conn=conn)
        except _Lost:
            return None
        except InputError as exc:
            self._fail(row, f"inputs are invalid: {exc}")
            return None
        self.queue.enqueue(run_id)
        log.info("calendar %s/%s: draft run %s for %s", row.workflow, row.entry_id, run_id, row.slot)
        return run_id

    def _post(self, row, loaded, now: datetime, late: bool) -> str | None:
        store = self.runtime.store
        run_id = uuid.uuid4().hex
        allowed = {L.APPROVED} if row.needs_approval else {L.PLANNED, L.APPROVED, L.GENERATED}
        retry_of = row.draft_run_id if row.draft_run_id and store.get_run(row.draft_run_id) else None
        note = f"posted late after downtime (slot {L.aware(row.slot).isoformat()})" if late else ""
        try:
            resolved = resolve_inputs(loaded.workflow.inputs, row.inputs or {})
            with store.writing() as conn:
                if not self._update(row.workflow, row.entry_id, row.version, allowed, conn=conn,
                                    post_run_id=run_id, note=note):
                    raise _Lost
                trigger = self._trigger(row, "post")
                if late:
                    trigger["calendar"]["late"] = True
                store.create_run(loaded.name, inputs=resolved, trigger=trigger, trigger_kind="calendar",
                                 workflow_file=loaded.file, run_id=run_id, retry_of=retry_of, conn=conn)
                if late:
                    L.log_event(conn, row.workflow, row.entry_id, "posted_late", note, now)
        except _Lost:
            return None
        except InputError as exc:
            self._fail(row, f"inputs are invalid: {exc}")
            return None
        self.queue.enqueue(run_id)
        log.info("calendar %s/%s: post run %s%s", row.workflow, row.entry_id, run_id, " (late)" if late else "")
        return run_id

    def _miss(self, row, now: datetime, why: str) -> bool:
        message = f"entry {row.entry_id} of {row.workflow} at {L.aware(row.slot).isoformat()} was not posted: {why}"
        with self.runtime.store.writing() as conn:
            if not self._update(row.workflow, row.entry_id, row.version, set(L.OPEN), conn=conn, status=L.MISSED,
                                note=why):
                return False
            L.log_event(conn, row.workflow, row.entry_id, "missed", message, now)
        log.warning("calendar: %s", message)
        return True

    def _fail(self, row, why: str) -> None:
        with self.runtime.store.writing() as conn:
            if self._update(row.workflow, row.entry_id, row.version, set(L.OPEN), conn=conn, status=L.FAILED,
                            note=why):
                L.log_event(conn, row.workflow, row.entry_id, "failed", why, self.now())
        log.error("calendar %s/%s: %s", row.workflow, row.entry_id, why)

    def _reconcile(self) -> None:
        """Entries whose post run finished take its outcome (read from the store: any process may have run
        it). A failed post retried later (``POST /api/v1/runs/{id}/retry``) takes the outcome of the latest
        retry in its chain, for a week after the failure."""
        since = L.utcnow_naive(self.now() - timedelta(days=7))
        e = L.ENTRIES
        with self.runtime.store.engine.connect() as conn:
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
            with self.runtime.store.writing() as conn:
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

    # -- what people do (API and dashboard) -----------------------------------------------------

    def list(self, workflow: str | None = None, start: datetime | None = None, end: datetime | None = None) -> list:
        self._reconcile()
        q = select(L.ENTRIES).order_by(L.ENTRIES.c.slot, L.ENTRIES.c.workflow)
        if workflow:
            q = q.where(L.ENTRIES.c.workflow == workflow)
        if start:
            q = q.where(L.ENTRIES.c.slot >= L.utcnow_naive(start))
        if end:
            q = q.where(L.ENTRIES.c.slot < L.utcnow_naive(end))
        with self.runtime.store.engine.connect() as conn:
            return [L.entry_dict(r) for r in conn.execute(q.limit(5000))]

    def log(self, limit: int = 100) -> list[dict]:
        with self.runtime.store.engine.connect() as conn:
            rows = conn.execute(select(L.LOG).order_by(L.LOG.c.id.desc()).limit(limit))
            return [{"workflow": r.workflow, "id": r.entry_id, "kind": r.kind, "message": r.message,
                     "at": datetime.fromtimestamp(r.ts, timezone.utc).isoformat()} for r in rows]

    def get(self, workflow: str, entry_id: str) -> dict:
        return L.entry_dict(self._row(workflow, entry_id))

    def _row(self, workflow: str, entry_id: str):
        with self.runtime.store.engine.connect() as conn:
            row = L.get(conn, workflow, entry_id)
        if row is None:
            raise CalendarError(404, "not_found", f"no calendar entry '{entry_id}' in workflow '{workflow}'")
        return row

    def _loaded(self, workflow: str):
        loaded = self.workflows.get(workflow)
        if loaded is None:
            raise CalendarError(404, "not_found", f"no workflow named '{workflow}' is served")
        return loaded

    def _open(self, row, action: str, statuses=L.OPEN) -> None:
        if row.post_run_id is not None or row.status not in statuses:
            raise CalendarError(409, "conflict", f"entry '{row.entry_id}' is {row.status}"
                                f"{' and its post run exists' if row.post_run_id else ''}; it cannot be {action}")

    def _slot_free(self, workflow: str, slot: datetime, entry_id: str | None) -> None:
        with self.runtime.store.engine.connect() as conn:
            other = conn.execute(select(L.ENTRIES.c.entry_id).where(
                L.ENTRIES.c.workflow == workflow, L.ENTRIES.c.slot == L.utcnow_naive(slot),
                L.ENTRIES.c.status.not_in((L.SKIPPED, L.MISSED)), L.ENTRIES.c.entry_id != (entry_id or ""))).first()
        if other:
            raise CalendarError(409, "slot_taken", f"entry '{other[0]}' already posts at {slot.isoformat()}; "
                                                   "pick another time")

    def _when(self, loaded, when, tz: str | None) -> datetime:
        try:
            slot = parse_when(when, tz or loaded.calendar.settings.timezone)
        except Exception as exc:  # noqa: BLE001 - bad text or timezone: the message says which
            raise CalendarError(422, "invalid", f"'when': {exc}") from None
        if slot <= self.now():
            # a well-formed time that conflicts with the clock, not a malformed request: 409 like a taken slot
            raise CalendarError(409, "slot_past", f"'when' {slot.isoformat()} is in the past")
        return slot

    def _inputs(self, loaded, inputs: dict) -> dict:
        try:
            return resolve_inputs(loaded.workflow.inputs, inputs)
        except InputError as exc:
            raise CalendarError(422, "invalid_inputs", str(exc)) from None

    def add(self, workflow: str, when, *, inputs: dict | None = None, target: str | None = None,
            approved: bool = False, entry_id: str | None = None, tz: str | None = None) -> dict:
        loaded = self._loaded(workflow)
        slot = self._when(loaded, when, tz)
        resolved = self._inputs(loaded, inputs or {})
        if target is not None and target not in loaded.nodes:
            raise CalendarError(422, "invalid", f"target '{target}' is not a step of workflow '{workflow}'")
        entry_id = entry_id or f"api-{uuid.uuid4().hex[:10]}"
        self._slot_free(workflow, slot, None)
        try:
            with self.runtime.store.writing() as conn:
                conn.execute(L.ENTRIES.insert().values(
                    workflow=workflow, entry_id=entry_id, slot=L.utcnow_naive(slot), inputs=resolved, target=target,
                    needs_approval=loaded.calendar.settings.approval, status=L.APPROVED if approved else L.PLANNED,
                    source="api", where="added with the API", version=1, note="",
                    updated_at=L.utcnow_naive(self.now())))
        except IntegrityError:
            raise CalendarError(409, "conflict", f"entry '{entry_id}' exists in workflow '{workflow}'") from None
        return self.get(workflow, entry_id)

    def move(self, workflow: str, entry_id: str, when, tz: str | None = None) -> dict:
        loaded = self._loaded(workflow)
        row = self._row(workflow, entry_id)
        self._open(row, "moved")
        slot = self._when(loaded, when, tz)
        self._slot_free(workflow, slot, entry_id)
        if not self._update(workflow, entry_id, row.version, set(L.OPEN), slot=L.utcnow_naive(slot), source="api"):
            raise CalendarError(409, "conflict", "the entry changed meanwhile; reload and try again")
        return self.get(workflow, entry_id)

    def approve(self, workflow: str, entry_id: str) -> dict:
        row = self._row(workflow, entry_id)
        self._open(row, "approved", (L.PLANNED, L.GENERATED, L.APPROVED))
        if row.draft_run_id:
            run = self.runtime.store.get_run(row.draft_run_id)
            if run is not None and run["status"] in ("queued", "running"):
                raise CalendarError(409, "draft_running", "the draft is still being generated; approve it when "
                                                          "it is done")
            if run is not None and run["status"] != "succeeded":
                raise CalendarError(409, "draft_failed", f"the draft run {run['id']} {run['status']}; "
                                                         "regenerate it before approving")
        if row.status != L.APPROVED and not self._update(workflow, entry_id, row.version,
                                                         {L.PLANNED, L.GENERATED}, status=L.APPROVED):
            raise CalendarError(409, "conflict", "the entry changed meanwhile; reload and try again")
        return self.get(workflow, entry_id)

    def skip(self, workflow: str, entry_id: str) -> dict:
        row = self._row(workflow, entry_id)
        self._open(row, "skipped")
        with self.runtime.store.writing() as conn:
            if not self._update(workflow, entry_id, row.version, set(L.OPEN), conn=conn, status=L.SKIPPED,
                                note="skipped by a person"):
                raise CalendarError(409, "conflict", "the entry changed meanwhile; reload and try again")
            L.log_event(conn, workflow, entry_id, "skipped", "skipped by a person", self.now())
        return self.get(workflow, entry_id)

    def regenerate(self, workflow: str, entry_id: str, inputs: dict | None = None) -> dict:
        """A new draft with (edited) inputs; it replaces the previous draft and needs approval again."""
        loaded = self._loaded(workflow)
        row = self._row(workflow, entry_id)
        self._open(row, "regenerated")
        merged = {**(row.inputs or {}), **(inputs or {})}
        self._inputs(loaded, merged)
        extra = {"source": "api"} if inputs else {}
        if not self._draft(row, loaded, merged, statuses=L.OPEN, **extra):
            raise CalendarError(409, "conflict", "the entry changed meanwhile; reload and try again")
        return self.get(workflow, entry_id)
