"""Issue 9 (server, in process): the schedule ledger per schedule (with the migration of old databases),
retention by age and count that gives the space back, and hand-back of runs at shutdown."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

from sqlalchemy import update

from pixelmill.db import RunRow
from pixelmill.server.queue import RunQueue
from pixelmill.server.scheduler import Scheduler
from pixelmill.server.workflows import WorkflowSet

from .serverutil import write

TWO = """
name: twice
on:
  schedule:
    - {cron: "0 9 * * *", inputs: {who: a}}
    - {cron: "0 9 * * 1-5", inputs: {who: b}}
inputs: {who: {type: string, default: x}}
steps: [{id: p, node: prompt, with: {template: "{{ w }}", vars: {w: "${{ inputs.who }}"}}}]
"""


def _scheduler(runtime, folder):
    workflows = WorkflowSet(folder, runtime.registry)
    workflows.load()
    queue = RunQueue(runtime, workflows, workers=1)
    return Scheduler(runtime, workflows, queue), queue


def test_two_schedules_of_one_workflow_on_one_slot_each_fire_once(runtime, tmp_path):
    write(tmp_path / "wf", "twice.yaml", TWO)
    sched, queue = _scheduler(runtime, tmp_path / "wf")
    try:
        sched.sync()
        keys = sorted(sched._specs)
        assert len(keys) == 2
        slot = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)  # a Monday: both crons fall on it
        first = [sched._fire(k, slot) for k in keys]
        assert all(first), first  # the second schedule is not dropped
        assert [sched._fire(k, slot) for k in keys] == [None, None]  # each slot of each schedule once
        runs = runtime.store.list_runs(workflow="twice")
        assert sorted(r["inputs"]["who"] for r in runs) == ["a", "b"]
    finally:
        queue.writer.stop()


OLD_LEDGER = """
DROP TABLE schedule_fires;
CREATE TABLE schedule_fires (
    id INTEGER NOT NULL, workflow VARCHAR(200) NOT NULL, schedule_key VARCHAR(300) NOT NULL,
    fire_time DATETIME NOT NULL, run_id VARCHAR(32) NOT NULL, catch_up INTEGER NOT NULL,
    created_at DATETIME NOT NULL, PRIMARY KEY (id),
    CONSTRAINT uq_schedule_fires_slot UNIQUE (workflow, fire_time)
);
CREATE INDEX ix_schedule_fires_schedule_key ON schedule_fires (schedule_key);
INSERT INTO schedule_fires VALUES (1, 'twice', 'twice#0:abc', '2026-01-01 09:00:00.000000', 'r1', 0,
                                   '2026-01-01 09:00:00.000000');
"""


def test_an_old_ledger_is_migrated_keeping_its_rows(runtime, tmp_path):
    db = runtime.settings.db_url.split("///", 1)[1]
    with sqlite3.connect(db) as conn:
        conn.executescript(OLD_LEDGER)
    write(tmp_path / "wf", "twice.yaml", TWO)
    sched, queue = _scheduler(runtime, tmp_path / "wf")
    try:
        with sqlite3.connect(db) as conn:
            ddl = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'schedule_fires'").fetchone()[0]
            rows = conn.execute("SELECT id, schedule_key, run_id FROM schedule_fires").fetchall()
        assert "uq_schedule_fires_slot" not in ddl and "uq_schedule_fires_key_slot" in ddl
        assert rows == [(1, "twice#0:abc", "r1")]
        sched.sync()
        slot = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
        assert all(sched._fire(k, slot) for k in sorted(sched._specs))
        # a second start finds nothing to migrate
        from pixelmill.server.scheduler import migrate_ledger

        assert migrate_ledger(runtime.store.engine) is False
    finally:
        queue.writer.stop()


# -- 22: retention -------------------------------------------------------------------------------------------


def _make_runs(store, n: int, days_old: float = 0.0, size: int = 20_000) -> list[str]:
    ids = []
    for i in range(n):
        rid = store.create_run("w", inputs={"blob": "x" * size, "i": i})
        with store.writing() as conn:
            conn.execute(update(RunRow).where(RunRow.id == rid).values(
                status="succeeded",
                created_at=datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(days=days_old, seconds=n - i)))
        (store.artifacts_root / rid).mkdir()
        (store.artifacts_root / rid / "a.png").write_bytes(b"png")
        ids.append(rid)
    return ids


def test_retention_by_age_and_count_gives_the_space_back(runtime):
    from pixelmill.server.retention import Retention

    store = runtime.store
    old = _make_runs(store, 30, days_old=20)
    new = _make_runs(store, 60)
    queued = store.create_run("w", inputs={})  # never deleted, whatever its age
    db = store.url.split("///", 1)[1]
    store.reclaim_space()  # switch to incremental auto-vacuum while small
    before = _size(db)
    result = Retention(store, days=14, max_runs=25).apply()
    assert result["by_age"] == 30 and result["by_count"] == 35
    left = {r["id"] for r in store.list_runs(limit=500)}
    assert left == set(new[-25:]) | {queued}  # the newest 25 finished runs and the queued one
    assert not any((store.artifacts_root / rid).exists() for rid in old + new[:-25])
    assert result["reclaimed_bytes"] > 0 and _size(db) < before * 0.6, (before, _size(db))
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental from now on
    assert Retention(store, days=0, max_runs=0).apply() == {"by_age": 0, "by_count": 0, "related_rows": 0,
                                                            "reclaimed_bytes": 0}


def test_retention_deletes_the_callback_and_delivery_rows_of_deleted_runs(runtime, tmp_path):
    """The service's retention pass takes the ``run_callbacks`` and ``subscription_deliveries`` rows of the
    runs it deletes (and of runs deleted another way) with them; those of kept runs stay."""
    from sqlalchemy import insert, select

    from pixelmill.server import create_app
    from pixelmill.server.callbacks import CallbackRow
    from pixelmill.server.config import ServerConfig
    from pixelmill.server.subscriptions import DeliveryRow

    app = create_app(ServerConfig(workflows_dir=tmp_path, retention_days=14, retention_max_runs=0),
                     runtime=runtime, start=False)
    svc = app.extensions["pixelmill"]
    store = runtime.store
    old = _make_runs(store, 3, days_old=20, size=10)
    new = _make_runs(store, 2, size=10)
    gone_by_hand = _make_runs(store, 1, size=10)[0]  # deleted like DELETE /api/v1/runs/{id} does
    with store.writing() as conn:
        for rid in old + new + [gone_by_hand]:
            conn.execute(insert(CallbackRow).values(run_id=rid, url="http://127.0.0.1:9/cb", base_url="",
                                                    state="delivered", attempts=1))
            for n in range(2):
                conn.execute(insert(DeliveryRow).values(id=f"{rid[:28]}d{n:03d}", subscription_id="s" * 32,
                                                        run_id=rid, event="run.succeeded", state="delivered",
                                                        attempts=1))
    assert store.delete_run(gone_by_hand)
    result = svc.retention.apply()
    with store.engine.connect() as conn:
        callbacks = {r[0] for r in conn.execute(select(CallbackRow.run_id))}
        deliveries = sorted(r[0] for r in conn.execute(select(DeliveryRow.run_id)))
    assert callbacks == set(new)
    assert deliveries == sorted(new * 2)
    assert result["by_age"] == 3 and result["related_rows"] == 4 * 3
    assert svc.callbacks.status(new[0])["state"] == "delivered"
    assert len(svc.subscriptions.deliveries(new[1])) == 2
    assert svc.retention.apply()["related_rows"] == 0


def _size(db: str) -> int:
    import os

    return sum(os.path.getsize(db + s) for s in ("", "-wal") if os.path.exists(db + s))


# -- 19: hand-back at shutdown ---------------------------------------------------------------------------------


def test_hand_back_requeues_only_this_process_running_runs(runtime, tmp_path):
    store = runtime.store
    mine, other = store.create_run("w", inputs={}), store.create_run("w", inputs={})
    assert store.claim(mine)
    with store.writing() as conn:
        conn.execute(update(RunRow).where(RunRow.id == other).values(status="running", owner="elsewhere:1:1"))
    queue = RunQueue(runtime, WorkflowSet(None, runtime.registry))
    try:
        assert queue.hand_back([mine, other]) == [mine]
    finally:
        queue.writer.stop()
    assert store.get_run(mine)["status"] == "queued" and store.get_run(other)["status"] == "running"
