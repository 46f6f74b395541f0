"""The posting ledger: one row per (workflow, original run, step, target, content hash) in the run store.

A row goes ``sending`` before the first byte leaves and ``sent`` (with the remote id and URL) once
the platform confirms; a definitive refusal makes it ``failed``. A later attempt that finds ``sent``
returns the recorded post; one that finds ``sending`` knows an earlier attempt may have posted and
resumes with the same idempotency key / record key.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import JSON, DateTime, Integer, String, Text, UniqueConstraint, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from pixelmill.db import Base

SENDING, SENT, FAILED = "sending", "sent", "failed"


class PostingLedgerRow(Base):
    __tablename__ = "posting_ledger"
    __table_args__ = (UniqueConstraint("key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64))
    workflow: Mapped[str] = mapped_column(String(200), index=True)
    run_id: Mapped[str] = mapped_column(String(32), index=True)  # the original run (retries map to it)
    step_id: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(300))
    content_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_run_id: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str] = mapped_column(String(100))
    remote_id: Mapped[str | None] = mapped_column(String(300), nullable=True)
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    detail: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


_READY: weakref.WeakSet = weakref.WeakSet()  # engines whose table exists (weak: ids get reused)
_READY_LOCK = threading.Lock()


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def ledger_key(workflow: str, run_id: str, step_id: str, target: str, content_hash: str) -> str:
    raw = "\x1f".join((workflow, run_id, step_id, target, content_hash))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass
class Entry:
    id: int
    key: str
    state: str
    previous_state: str | None  # state before this attempt claimed it (None: new row)
    attempts: int
    remote_id: str | None
    url: str | None
    detail: dict | None
    created_at: datetime
    last_attempt_at: datetime | None = None  # when the previous attempt claimed the row


class Ledger:
    def __init__(self, store):
        self.engine = store.engine
        with _READY_LOCK:
            if self.engine not in _READY:
                Base.metadata.create_all(self.engine, tables=[PostingLedgerRow.__table__])
                _READY.add(self.engine)

    def get(self, key: str) -> Entry | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(PostingLedgerRow.__table__).where(PostingLedgerRow.key == key)) \
                .mappings().first()
        return _entry(row, row["state"]) if row else None

    def others_sent(self, workflow: str, run_id: str, step_id: str, target: str, content_hash: str) -> list[dict]:
        """Posts this step already made to this target in this run with different content."""
        t = PostingLedgerRow
        q = select(t.__table__).where(t.workflow == workflow, t.run_id == run_id, t.step_id == step_id,
                                      t.target == target, t.content_hash != content_hash,
                                      t.state.in_((SENT, SENDING)))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def unconfirmed_elsewhere(self, workflow: str, run_id: str, step_id: str, target: str, content_hash: str,
                              since: datetime) -> list[dict]:
        """The same post (same step, target and content) left unconfirmed by another run since ``since``."""
        t = PostingLedgerRow
        q = select(t.__table__).where(t.workflow == workflow, t.run_id != run_id, t.step_id == step_id,
                                      t.target == target, t.content_hash == content_hash, t.state == SENDING,
                                      t.updated_at >= since).order_by(t.updated_at.desc())
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def begin(self, *, key: str, workflow: str, run_id: str, step_id: str, target: str, content_hash: str,
              last_run_id: str, idempotency_key: str) -> Entry:
        """Claim the row for an attempt: insert it as ``sending`` or move a failed/sending row to ``sending``."""
        now = _now()
        t = PostingLedgerRow
        try:
            with self.engine.begin() as conn:
                res = conn.execute(insert(t).values(
                    key=key, workflow=workflow, run_id=run_id, step_id=step_id, target=target,
                    content_hash=content_hash, state=SENDING, attempts=1, last_run_id=last_run_id,
                    idempotency_key=idempotency_key, created_at=now, updated_at=now))
                row_id = res.inserted_primary_key[0]
            return Entry(row_id, key, SENDING, None, 1, None, None, None, now)
        except IntegrityError:
            pass
        with self.engine.begin() as conn:
            row = conn.execute(select(t.__table__).where(t.key == key)).mappings().first()
            if row["state"] != SENT:
                conn.execute(update(t).where(t.key == key).values(
                    state=SENDING, attempts=t.attempts + 1, last_run_id=last_run_id, updated_at=now, error=None))
        entry = _entry(row, row["state"])
        if row["state"] != SENT:
            entry.state, entry.attempts = SENDING, row["attempts"] + 1
        return entry

    def mark_sent(self, entry_id: int, remote_id: str | None, url: str | None, detail: dict | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(PostingLedgerRow).where(PostingLedgerRow.id == entry_id).values(
                state=SENT, remote_id=remote_id, url=url, detail=detail or {}, error=None, updated_at=_now()))

    def mark_failed(self, entry_id: int, error: str) -> None:
        """Only for definitive refusals: the platform answered, nothing was posted."""
        with self.engine.begin() as conn:
            conn.execute(update(PostingLedgerRow).where(PostingLedgerRow.id == entry_id,
                                                        PostingLedgerRow.state == SENDING)
                         .values(state=FAILED, error=error[:2000], updated_at=_now()))

    def rows(self, **where) -> list[dict]:
        q = select(PostingLedgerRow.__table__).order_by(PostingLedgerRow.id)
        for name, value in where.items():
            q = q.where(getattr(PostingLedgerRow, name) == value)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]


def _entry(row, previous) -> Entry:
    return Entry(row["id"], row["key"], row["state"], previous, row["attempts"], row["remote_id"], row["url"],
                 row["detail"], row["created_at"], row["updated_at"])
