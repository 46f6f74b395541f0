"""Worker heartbeats in the run store: who is alive, what it listens to, what it runs.

A worker writes its row every ``interval`` seconds. A worker not heard from for ``stale_after`` seconds is
dead: its ``running`` run goes back to ``queued`` (on any host; on its own host a dead pid is seen at once)
and is sent again, and the next worker resumes it from its stored step results. The same beat carries a
cancel request made in another process to the run executing here.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from datetime import timedelta

from sqlalchemy import delete, insert, select, update

from ..db import WorkerRow
from ..store import utcnow

log = logging.getLogger(__name__)
_T = WorkerRow.__table__


class Heartbeat:
    def __init__(self, runtime, *, queues: list[str], device: str, interval: float = 2.0):
        self.runtime = runtime
        self.store = runtime.store
        self.queues, self.device, self.interval = list(queues), device, interval
        self.id = self.store.owner
        self.current_run: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pixelmill-heartbeat", daemon=True)

    def start(self) -> None:
        now = utcnow()
        with self.store.writing() as conn:
            conn.execute(delete(_T).where(_T.c.id == self.id))
            conn.execute(insert(_T).values(id=self.id, hostname=socket.gethostname(), queues=self.queues,
                                           device=self.device, models=[], current_run=None, started_at=now,
                                           last_seen=now))
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with self.store.writing() as conn:
            conn.execute(delete(_T).where(_T.c.id == self.id))

    def beat(self) -> None:
        run_id = self.current_run
        with self.store.writing() as conn:
            conn.execute(update(_T).where(_T.c.id == self.id).values(
                last_seen=utcnow(), current_run=run_id, models=self._models()))
        if run_id is not None and self.store.cancel_requested(run_id):
            self.runtime.executor.cancel(run_id)  # asked for by the API process: stop at the next check

    def _models(self) -> list:
        """What the process's model manager holds (models stay loaded between runs of this worker)."""
        for service in self.runtime.services.values():
            loaded = getattr(service, "loaded", None)
            if callable(loaded):
                try:
                    return json.loads(json.dumps(loaded(), default=str))
                except Exception:
                    return []
        return []

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:
                log.exception("heartbeat failed")


def stale_workers(store, stale_after: float) -> set[str]:
    cutoff = utcnow() - timedelta(seconds=stale_after)
    with store.engine.connect() as conn:
        return {r[0] for r in conn.execute(select(_T.c.id).where(_T.c.last_seen < cutoff))}


def forget_workers(store, after: float) -> int:
    """Delete the rows of workers not heard from for ``after`` seconds (their runs were taken back already)."""
    cutoff = utcnow() - timedelta(seconds=after)
    with store.writing() as conn:
        return conn.execute(delete(_T).where(_T.c.last_seen < cutoff)).rowcount


def list_workers(store, stale_after: float) -> list[dict]:
    """Every registered worker with ``alive`` (heard from within ``stale_after`` seconds)."""
    cutoff = utcnow() - timedelta(seconds=stale_after)
    with store.engine.connect() as conn:
        rows = conn.execute(select(_T).order_by(_T.c.hostname, _T.c.id)).mappings().all()
    out = []
    for r in rows:
        d = dict(r)
        d["alive"] = d["last_seen"] >= cutoff
        for k in ("started_at", "last_seen"):
            d[k] = d[k].isoformat() + "Z"
        out.append(d)
    return out
