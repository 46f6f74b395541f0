"""Result callbacks (n8n's Wait node ``$execution.resumeUrl``): POST the run's result when it ends,
retried with exponential backoff. Pending deliveries live in the store and survive a restart.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from datetime import datetime, timezone

import requests
from sqlalchemy import Integer, String, Text, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base

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


def _now() -> float:
    return time.monotonic()


class CallbackDispatcher:
    def __init__(self, runtime, result_body, *, attempts: int = 6, backoff: float = 1.0, timeout: float = 10.0):
        self.runtime = runtime
        self.result_body = result_body  # (run dict, base_url) -> JSON body
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self._pending: set[str] = set()
        self._heap: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._session = requests.Session()
        Base.metadata.create_all(runtime.store.engine, tables=[CallbackRow.__table__])

    def start(self) -> None:
        t = CallbackRow.__table__
        with self.runtime.store.engine.connect() as conn:
            ids = [r[0] for r in conn.execute(select(t.c.run_id).where(t.c.state == "pending"))]
        for run_id in ids:
            self._pending.add(run_id)
            run = self.runtime.store.get_run(run_id)
            if run is None or run["status"] not in ("queued", "running"):
                self._schedule(run_id, 0.0)
        self._thread = threading.Thread(target=self._loop, name="pixelmill-callbacks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    def register(self, run_id: str, url: str, base_url: str) -> None:
        with self.runtime.store.writing() as conn:
            conn.execute(insert(CallbackRow).values(run_id=run_id, url=url, base_url=base_url, state="pending",
                                                    attempts=0))
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
        status, error = None, None
        try:
            refused = refused_host(row["url"])
            if refused:
                raise ValueError(refused)
            resp = self._session.post(row["url"], json=body, timeout=self.timeout,
                                      headers={"Idempotency-Key": run_id, "X-Pixelmill-Run-Id": run_id,
                                               "User-Agent": "pixelmill-callback"})
            status = resp.status_code
            ok = 200 <= status < 300
            retryable = status >= 500 or status in (408, 425, 429)
            if not ok:
                error = f"HTTP {status}"
        except requests.RequestException as exc:
            ok, retryable, error = False, True, f"{type(exc).__name__}: {exc}"
        except (ValueError, UnicodeError) as exc:  # a URL the HTTP client cannot use: retrying cannot help
            ok, retryable, error = False, False, f"{type(exc).__name__}: {str(exc)[:200]}"
        if ok:
            state = "delivered"
        elif retryable and attempt < self.attempts:
            state = "pending"
        else:
            state = "failed"
        with self.runtime.store.writing() as conn:
            conn.execute(update(t).where(t.c.run_id == run_id).values(state=state, attempts=attempt,
                                                                        last_error=error, last_status=status))
        if state == "pending":
            delay = self.backoff * (2 ** (attempt - 1))
            log.warning("callback for run %s failed (%s); attempt %d of %d in %.1f s", run_id, error, attempt + 1,
                        self.attempts, delay)
            self._schedule(run_id, delay)
        else:
            self._pending.discard(run_id)
            if state == "failed":
                log.error("callback for run %s gave up after %d attempt(s): %s", run_id, attempt, error)

    def status(self, run_id: str) -> dict | None:
        t = CallbackRow.__table__
        with self.runtime.store.engine.connect() as conn:
            row = conn.execute(select(t.c.state, t.c.attempts, t.c.last_error, t.c.last_status)
                               .where(t.c.run_id == run_id)).mappings().first()
        return dict(row) if row else None


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
