"""The calendar's tables in the run store's database, and its atomic claims.

``calendar_entries`` holds one row per (workflow, entry id). Every change of state is one conditional
UPDATE (``WHERE status = ... AND post_run_id IS NULL``) in the same transaction as the run it creates, so
of several processes sharing the database exactly one wins each claim; the others see ``rowcount == 0``
and roll back. No in-process lock is involved. ``calendar_log`` records what happened to entries
(missed, skipped, posted late) for people and for the API.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, Text, UniqueConstraint, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base

PLANNED, GENERATED, APPROVED = "planned", "generated", "approved"
POSTED, FAILED, SKIPPED, MISSED = "posted", "failed", "skipped", "missed"
OPEN = (PLANNED, GENERATED, APPROVED)  # not yet posted (or given up)
STATUSES = (PLANNED, GENERATED, APPROVED, POSTED, FAILED, SKIPPED, MISSED)


class CalendarEntryRow(Base):
    __tablename__ = "calendar_entries"
    __table_args__ = (UniqueConstraint("workflow", "entry_id", name="uq_calendar_entry"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow: Mapped[str] = mapped_column(String(200), index=True)
    entry_id: Mapped[str] = mapped_column(String(200))
    slot: Mapped[datetime] = mapped_column(DateTime, index=True)  # UTC, naive
    inputs: Mapped[dict] = mapped_column(JSON, default=dict)
    target: Mapped[str | None] = mapped_column(String(100), nullable=True)
    needs_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), index=True)
    source: Mapped[str] = mapped_column(String(20), default="file")  # file (follows the file) | api (edited)
    where: Mapped[str] = mapped_column(Text, default="")
    draft_run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    post_run_id: Mapped[str | None] = mapped_column(String(32), nullable=True, unique=True)
    note: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class CalendarLogRow(Base):
    __tablename__ = "calendar_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow: Mapped[str] = mapped_column(String(200), index=True)
    entry_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text, default="")
    ts: Mapped[float] = mapped_column(Float)


ENTRIES, LOG = CalendarEntryRow.__table__, CalendarLogRow.__table__


def create_tables(engine) -> None:
    Base.metadata.create_all(engine, tables=[ENTRIES, LOG])


def utcnow_naive(now: datetime) -> datetime:
    return now.astimezone(timezone.utc).replace(tzinfo=None)


def aware(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc)


def log_event(conn, workflow: str, entry_id: str, kind: str, message: str, now: datetime) -> None:
    conn.execute(insert(LOG).values(workflow=workflow, entry_id=entry_id, kind=kind, message=message,
                                    ts=now.timestamp()))


def entry_dict(row) -> dict:
    m = dict(row._mapping)
    return {"workflow": m["workflow"], "id": m["entry_id"], "slot": aware(m["slot"]).isoformat(),
            "inputs": m["inputs"] or {}, "target": m["target"], "needs_approval": bool(m["needs_approval"]),
            "status": m["status"], "source": m["source"], "where": m["where"], "draft_run_id": m["draft_run_id"],
            "post_run_id": m["post_run_id"], "note": m["note"], "version": m["version"],
            "updated_at": aware(m["updated_at"]).isoformat()}


def get(conn, workflow: str, entry_id: str):
    return conn.execute(select(ENTRIES).where(ENTRIES.c.workflow == workflow,
                                              ENTRIES.c.entry_id == entry_id)).first()


def update_entry(conn, workflow: str, entry_id: str, version: int, statuses, now: datetime, **values) -> int:
    """The one conditional write every change of an entry goes through: 1 if this call won, 0 if not
    (the entry is at another version or status, or its post run exists)."""
    stmt = ENTRIES.update().where(
        ENTRIES.c.workflow == workflow, ENTRIES.c.entry_id == entry_id, ENTRIES.c.version == version,
        ENTRIES.c.status.in_(sorted(statuses)), ENTRIES.c.post_run_id.is_(None),
    ).values(version=version + 1, updated_at=utcnow_naive(now), **values)
    return conn.execute(stmt).rowcount
