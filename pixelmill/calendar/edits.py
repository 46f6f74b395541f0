"""What people do with calendar entries (the API and the dashboard): read them, add one, move it to
another time, approve its draft, skip it, regenerate its draft with edited inputs.

Each request is checked first (the entry exists and is still open, the time is well-formed and in the
future, the slot is free, the inputs fit the workflow) and refused with a ``CalendarError`` that carries
the HTTP status and a short code; each change is one conditional write of the ledger, so a request that
races another process's change is refused as a conflict, never half applied.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..inputs import InputError, resolve_inputs
from . import ledger as L
from .entries import parse_when


class CalendarError(Exception):
    """A request the calendar refuses: ``status`` is the HTTP status, ``code`` a short machine word."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Edits:
    """The requests above, on the run store's database; ``runs`` makes regenerated drafts."""

    def __init__(self, store, workflows, runs, now):
        self.store = store
        self.workflows = workflows
        self.runs = runs
        self.now = now  # the clock, called each time

    def list(self, workflow: str | None = None, start: datetime | None = None, end: datetime | None = None) -> list:
        self.runs.reconcile()
        q = select(L.ENTRIES).order_by(L.ENTRIES.c.slot, L.ENTRIES.c.workflow)
        if workflow:
            q = q.where(L.ENTRIES.c.workflow == workflow)
        if start:
            q = q.where(L.ENTRIES.c.slot >= L.utcnow_naive(start))
        if end:
            q = q.where(L.ENTRIES.c.slot < L.utcnow_naive(end))
        with self.store.engine.connect() as conn:
            return [L.entry_dict(r) for r in conn.execute(q.limit(5000))]

    def log(self, limit: int = 100) -> list[dict]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(L.LOG).order_by(L.LOG.c.id.desc()).limit(limit))
            return [{"workflow": r.workflow, "id": r.entry_id, "kind": r.kind, "message": r.message,
                     "at": datetime.fromtimestamp(r.ts, timezone.utc).isoformat()} for r in rows]

    def get(self, workflow: str, entry_id: str) -> dict:
        return L.entry_dict(self._row(workflow, entry_id))

    def _row(self, workflow: str, entry_id: str):
        with self.store.engine.connect() as conn:
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
        with self.store.engine.connect() as conn:
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
            with self.store.writing() as conn:
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
        with self.store.writing() as conn:
            won = L.update_entry(conn, workflow, entry_id, row.version, set(L.OPEN), self.now(),
                                 slot=L.utcnow_naive(slot), source="api")
        if not won:
            raise CalendarError(409, "conflict", "the entry changed meanwhile; reload and try again")
        return self.get(workflow, entry_id)

    def approve(self, workflow: str, entry_id: str) -> dict:
        row = self._row(workflow, entry_id)
        self._open(row, "approved", (L.PLANNED, L.GENERATED, L.APPROVED))
        if row.draft_run_id:
            run = self.store.get_run(row.draft_run_id)
            if run is not None and run["status"] in ("queued", "running"):
                raise CalendarError(409, "draft_running", "the draft is still being generated; approve it when "
                                                          "it is done")
            if run is not None and run["status"] != "succeeded":
                raise CalendarError(409, "draft_failed", f"the draft run {run['id']} {run['status']}; "
                                                         "regenerate it before approving")
        if row.status != L.APPROVED:
            with self.store.writing() as conn:
                won = L.update_entry(conn, workflow, entry_id, row.version, {L.PLANNED, L.GENERATED}, self.now(),
                                     status=L.APPROVED)
            if not won:
                raise CalendarError(409, "conflict", "the entry changed meanwhile; reload and try again")
        return self.get(workflow, entry_id)

    def skip(self, workflow: str, entry_id: str) -> dict:
        row = self._row(workflow, entry_id)
        self._open(row, "skipped")
        with self.store.writing() as conn:
            if not L.update_entry(conn, workflow, entry_id, row.version, set(L.OPEN), self.now(), status=L.SKIPPED,
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
        if not self.runs.draft(row, loaded, merged, statuses=L.OPEN, **extra):
            raise CalendarError(409, "conflict", "the entry changed meanwhile; reload and try again")
        return self.get(workflow, entry_id)
