"""Retention figures, measured in one run: a run store with N finished runs spread over 30 days (each
with 3 step rows and 12 events of ~2 KB like a small workflow, a callback row and a subscription delivery),
then one retention pass with the defaults (14 days, 10,000 runs), as ``serve`` runs it. Prints the
database size before and after, runs kept, and the time.

Usage: python bench/retention.py [--runs 40000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert  # noqa: E402

from pixelmill.db import Base, EventRow, RunRow, StepRow  # noqa: E402
from pixelmill.server.callbacks import CallbackRow  # noqa: E402
from pixelmill.server.retention import Retention  # noqa: E402
from pixelmill.server.subscriptions import DeliveryRow  # noqa: E402
from pixelmill.store import RunStore  # noqa: E402


def fill(store: RunStore, n: int) -> None:
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    blob = "x" * 2000
    for start in range(0, n, 1000):
        runs, steps, events, callbacks, deliveries = [], [], [], [], []
        for i in range(start, min(n, start + 1000)):
            rid = uuid.uuid4().hex
            created = now - timedelta(days=30 * i / n)
            runs.append(dict(id=rid, workflow="bench", workflow_file="", status="succeeded", trigger_kind="webhook",
                             trigger={}, inputs={"topic": "cats"}, outputs={"text": blob[:500]}, error=None,
                             created_at=created, started_at=created, finished_at=created, owner=None,
                             retry_of=None, cancel_requested=False))
            for s in range(3):
                steps.append(dict(run_id=rid, step_id=f"s{s}", node_type="prompt", node_version="1",
                                  status="succeeded", attempts=1, started_at=created, finished_at=created,
                                  duration_s=0.01, inputs={"t": blob[:300]}, outputs={"o": blob[:300]}, error=None))
            for _ in range(12):
                events.append(dict(run_id=rid, kind="step.progress", step_id="s0", data={"m": blob[:150]}, ts=0.0))
            callbacks.append(dict(run_id=rid, url="https://n8n.example/webhook-waiting/1", base_url="",
                                  state="delivered", attempts=1))
            deliveries.append(dict(id=uuid.uuid4().hex, subscription_id="s" * 32, run_id=rid, event="run.succeeded",
                                   state="delivered", attempts=1))
        with store.writing() as conn:
            conn.execute(insert(RunRow), runs)
            conn.execute(insert(StepRow), steps)
            conn.execute(insert(EventRow), events)
            conn.execute(insert(CallbackRow), callbacks)
            conn.execute(insert(DeliveryRow), deliveries)


def size(db: str) -> int:
    return sum(os.path.getsize(db + s) for s in ("", "-wal") if os.path.exists(db + s))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = f"{tmp}/pixelmill.db"
        store = RunStore(f"sqlite:///{db}", Path(tmp) / "artifacts")
        tables = (CallbackRow.__table__, DeliveryRow.__table__)
        Base.metadata.create_all(store.engine, tables=list(tables))
        fill(store, args.runs)
        store.engine.dispose()
        before = size(db)
        t0 = time.perf_counter()
        first = Retention(store, run_tables=tables).apply()
        t1 = time.perf_counter()
        fill(store, 2000)  # two more days of runs, then the next pass (incremental vacuum from now on)
        mid = size(db)
        second = Retention(store, run_tables=tables).apply()
        t2 = time.perf_counter()
        kept = store.count_runs()
        print(f"runs created            {args.runs} over 30 days")
        print(f"database before         {before / 1e6:.1f} MB")
        print(f"first pass (VACUUM)     deleted {first['by_age']} by age + {first['by_count']} by count, "
              f"{first['related_rows']} callback/delivery rows, {t1 - t0:.1f} s, "
              f"freed {first['reclaimed_bytes'] / 1e6:.1f} MB")
        print(f"after 2,000 more runs   {mid / 1e6:.1f} MB")
        print(f"second pass (incremental) deleted {second['by_age'] + second['by_count']}, {t2 - t1:.1f} s, "
              f"freed {second['reclaimed_bytes'] / 1e6:.1f} MB")
        print(f"database after          {size(db) / 1e6:.1f} MB, {kept} runs kept")
        store.close()


if __name__ == "__main__":
    main()
