"""Retention, applied by ``serve`` every ``PIXELMILL_RETENTION_INTERVAL`` seconds: finished runs older
than ``PIXELMILL_RETENTION_DAYS`` and beyond the newest ``PIXELMILL_RETENTION_MAX_RUNS`` are deleted with
their steps, events and artifacts, then the rows other tables keep per run (``run_tables``: callbacks,
subscription deliveries) whose run is gone, however it went (this pass, ``DELETE /api/v1/runs/{id}``,
``pixelmill prune``), then the database gives the space back (n8n's defaults: 14 days, 10,000
executions). 0 turns either limit off."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from ..store import utcnow

log = logging.getLogger(__name__)


class Retention:
    def __init__(self, store, *, days: float = 14.0, max_runs: int = 10_000, interval: float = 3600.0,
                 run_tables=()):
        self.store = store
        self.run_tables = tuple(run_tables)  # tables with a ``run_id`` column, pruned with their runs
        self.days = days
        self.max_runs = max_runs
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.days or self.max_runs)

    def apply(self) -> dict:
        """One pass: returns how many runs were deleted by age and by count, how many rows of ``run_tables``
        went with them, and the bytes reclaimed."""
        by_age = self.store.prune_finished(older_than=utcnow() - timedelta(days=self.days)) if self.days else 0
        by_count = self.store.prune_finished(keep_newest=self.max_runs) if self.max_runs else 0
        related = sum(self.store.delete_orphans(table) for table in self.run_tables)
        freed = self.store.reclaim_space() if (by_age or by_count or related) else 0
        if by_age or by_count or related:
            log.info("retention: deleted %d run(s) older than %g day(s) and %d beyond the newest %d, %d callback "
                     "or delivery row(s) of deleted runs; reclaimed %d bytes", by_age, self.days, by_count,
                     self.max_runs, related, freed)
        return {"by_age": by_age, "by_count": by_count, "related_rows": related, "reclaimed_bytes": freed}

    def start(self) -> None:
        if not self.enabled or self.interval <= 0:
            return
        self._thread = threading.Thread(target=self._loop, name="pixelmill-retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        while True:
            try:
                self.apply()
            except Exception:  # noqa: BLE001 - retention must never take the service down
                log.exception("retention pass failed; trying again in %g s", self.interval)
            if self._stop.wait(self.interval):
                return
