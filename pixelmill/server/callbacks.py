"""Result callbacks (n8n's Wait node ``$execution.resumeUrl``): POST the run's result when it ends,
retried with exponential backoff and jitter over a window (PIXELMILL_CALLBACK_WINDOW, default one hour,
counted from the first failure). Pending deliveries live in the store and survive a restart; the store and
the logs hold the URL with its ``signature`` redacted, the real URL only sealed with the signing key.
"""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
from datetime import datetime, timezone

import requests
from sqlalchemy import Float, Integer, String, Text, insert, inspect, select, text, update
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base
from .signing import redact_url

log = logging.getLogger(__name__)


class CallbackRow(Base):
    __tablename__ = "run_callbacks"
    run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    base_url: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(20), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sealed: Mapped[str | None] = mapped_column(Text, nullable=True)  # the real URL, sealed
    first_failure_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # unix time
    next_attempt_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # unix time

NEW_COLUMNS = {"sealed": "TEXT", "first_failure_at": "FLOAT", "next_attempt_at": "FLOAT"}


def add_missing_columns(engine, table, columns: dict[str, str]) -> None:
    """Tables made by an older version gain the new nullable columns."""
    have = {c["name"] for c in inspect(engine).get_columns(table.name)}
    with engine.begin() as conn:
        for name, sql_type in columns.items():
            if name not in have:
                conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {name} {sql_type}"))


def next_delay(attempt: int, backoff: float, cap: float, rng=random.random) -> float:
    """Exponential backoff with jitter: ``backoff * 2**(attempt-1)`` capped at ``cap``, then scaled by a
    random factor in [0.5, 1) so that many failed callbacks do not retry in step."""
    return min(cap, backoff * (2 ** min(attempt - 1, 30))) * (0.5 + 0.5 * rng())


def _now() -> float:
    return time.monotonic()


class CallbackDispatcher:
    def __init__(self, runtime, result_body, *, attempts: int = 0, backoff: float = 1.0, timeout: float = 10.0,
                 window: float = 3600.0, max_delay: float = 300.0, sealer=None):
        self.runtime = runtime
        self.result_body = result_body  # (run dict, base_url) -> JSON body
        self.attempts = attempts  # 0: no limit but the window
        self.backoff = backoff
        self.timeout = timeout
        self.window = window
        self.max_delay = max_delay
        self.sealer = sealer
        self._pending: set[str] = set()
        self._heap: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._session = requests.Session()
        Base.metadata.create_all(runtime.store.engine, tables=[CallbackRow.__table__])
        add_missing_columns(runtime.store.engine, CallbackRow.__table__, NEW_COLUMNS)

    def start(self) -> None:
        t = CallbackRow.__table__
        with self.runtime.store.engine.connect() as conn:
            rows = list(conn.execute(select(t.c.run_id, t.c.next_attempt_at).where(t.c.state == "pending")))
        for run_id, next_at in rows:
            self._pending.add(run_id)
            run = self.runtime.store.get_run(run_id)
            if run is None or run["status"] not in ("queued", "running"):
                self._schedule(run_id, max(0.0, (next_at or 0.0) - time.time()))
        self._thread = threading.Thread(target=self._loop, name="pixelmill-callbacks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    def register(self, run_id: str, url: str, base_url: str) -> None:
        with self.runtime.store.writing() as conn:
            sealed = self.sealer.seal(url) if self.sealer is not None else None
            stored = redact_url(url) if sealed is not None else url
            conn.execute(insert(CallbackRow).values(run_id=run_id, url=stored, base_url=base_url, state="pending",
                                                    attempts=0, sealed=sealed))
        self._pending.add(run_id)

    def on_finished(self, run_id: str) -> None:
        if run_id in self._pending:
            self._schedule(run_id, 0.0)

    def _schedule(self, run_id: str, delay: float) -> None:
        with self._cond:
            heapq.heappush(self._heap, (_now() + delay, run_id))
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (not self._heap or self._heap[0][0] > _now()):
                    self._cond.wait(None if not self._heap else max(0.0, self._heap[0][0] - _now()))
                if self._stop:
                    return
                _, run_id = heapq.heappop(self._heap)
            try:
                self._deliver(run_id)
            except Exception:
                log.exception("callback for run %s failed unexpectedly", run_id)

    def _deliver(self, run_id: str) -> None:
        t = CallbackRow.__table__
        with self.runtime.store.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.run_id == run_id)).mappings().first()
        run = self.runtime.store.get_run(run_id)
        if row is None or row["state"] != "pending" or run is None:
            self._pending.discard(run_id)
            return
        attempt = row["attempts"] + 1
        body = self.result_body(run, row["base_url"])
        try:
            url = self.sealer.open(row["sealed"]) if row["sealed"] and self.sealer is not None else row["url"]
        except Exception:  # noqa: BLE001 - cryptography's InvalidToken: the signing key changed since
            url = None
        if url is None:
            with self.runtime.store.writing() as conn:
                conn.execute(update(t).where(t.c.run_id == run_id).values(
                    state="failed", last_error="the stored callback URL cannot be unsealed: PIXELMILL_SIGNING_KEY "
                                               "changed since the run started"))
            self._pending.discard(run_id)
            log.error("callback for run %s dropped: its sealed URL needs the previous signing key", run_id)
            return
        status, error = None, None
        try:
            refused = refused_host(url)
            if refused:
                raise ValueError(refused)
            resp = self._session.post(url, json=body, timeout=self.timeout,
                                      headers={"Idempotency-Key": run_id, "X-Pixelmill-Run-Id": run_id,
                                               "User-Agent": "pixelmill-callback"})
            status = resp.status_code
            ok = 200 <= status < 300
            retryable = status >= 500 or status in (408, 425, 429)
            if not ok:
                error = f"HTTP {status}"
        except requests.RequestException as exc:
            ok, retryable, error = False, True, redact_url(f"{type(exc).__name__}: {exc}")
        except (ValueError, UnicodeError) as exc:  # a URL the HTTP client cannot use: retrying cannot help
            ok, retryable, error = False, False, f"{type(exc).__name__}: {str(exc)[:200]}"
        now = time.time()
        first = row["first_failure_at"] if row["first_failure_at"] is not None else (None if ok else now)
        delay = next_delay(attempt, self.backoff, self.max_delay)
        within = first is not None and (now + delay) - first <= self.window
        under_limit = self.attempts <= 0 or attempt < self.attempts
        if ok:
            state = "delivered"
        elif retryable and within and under_limit:
            state = "pending"
        else:
            state = "failed"
        next_at = now + delay if state == "pending" else None
        with self.runtime.store.writing() as conn:
            conn.execute(update(t).where(t.c.run_id == run_id).values(
                state=state, attempts=attempt, last_error=error, last_status=status, first_failure_at=first,
                next_attempt_at=next_at))
        if state == "pending":
            log.warning("callback for run %s to %s failed (%s); attempt %d in %.1f s (retrying until %.0f s after "
                        "the first failure)", run_id, row["url"], error, attempt + 1, delay, self.window)
            self._schedule(run_id, delay)
        else:
            self._pending.discard(run_id)
            if state == "failed":
                log.error("callback for run %s gave up after %d attempt(s): %s", run_id, attempt, error)

    def status(self, run_id: str) -> dict | None:
        t = CallbackRow.__table__
        with self.runtime.store.engine.connect() as conn:
            row = conn.execute(select(t.c.url, t.c.state, t.c.attempts, t.c.last_error, t.c.last_status,
                                      t.c.first_failure_at, t.c.next_attempt_at)
                               .where(t.c.run_id == run_id)).mappings().first()
        if not row:
            return None
        out = dict(row)
        out["url"] = redact_url(out["url"])
        for key in ("first_failure_at", "next_attempt_at"):
            if out[key] is not None:
                out[key] = datetime.fromtimestamp(out[key], timezone.utc).isoformat()
        if out["first_failure_at"] is not None:
            out["retry_until"] = datetime.fromtimestamp(row["first_failure_at"] + self.window,
                                                        timezone.utc).isoformat()
        return out


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat()


def refused_host(url: str) -> str | None:
    """Why a callback to ``url`` is not sent, when ``PIXELMILL_CALLBACK_HOSTS`` (comma-separated host names)
    limits where callbacks may go; None when it may be sent. An egress allow-list for operators, and what
    keeps fuzz tests from calling made-up hosts."""
    import os
    from urllib.parse import urlsplit

    allowed = {h.strip().lower() for h in os.environ.get("PIXELMILL_CALLBACK_HOSTS", "").split(",") if h.strip()}
    if not allowed:
        return None
    host = (urlsplit(url).hostname or "").lower()
    if host in allowed:
        return None
    return f"callback host {host[:80]!r} is not in PIXELMILL_CALLBACK_HOSTS; not sent"
