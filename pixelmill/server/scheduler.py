"""Schedules: APScheduler 3.11 jobs built from the workflows' ``on.schedule`` triggers, plus a ledger.

* Each schedule is a job with a stable id (workflow, position, hash of its definition), ``coalesce=True``
  and ``max_instances=1``; ``sync()`` adds, replaces and removes jobs when workflows change (reload, SIGHUP).
* Every fire writes a ledger row keyed by (schedule, scheduled fire time) with a unique constraint, in the
  same transaction as the queued run: one run per slot of each schedule, even with two servers on one
  database; two schedules of one workflow that fall on the same time each run once. Databases made with
  the earlier key (workflow, time) are migrated on start (``migrate_ledger``).
* Misfire policy, also across restarts: the first time a schedule is seen its start is recorded. On start,
  slots after max(start, last fired slot) up to now were missed while the service was down:
  ``run_once`` runs once for the latest of them, ``skip`` runs none. While running, a slot later than
  PIXELMILL_MISFIRE_GRACE seconds is skipped under ``skip`` and run (coalesced) under ``run_once``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import traceback
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.base import BaseExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import DateTime, Integer, String, UniqueConstraint, func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.schema import CreateIndex, CreateTable

from ..db import Base
from ..inputs import InputError, resolve_inputs
from ..schedules import build_trigger, parse_interval
from ..schedules import timezone as zone

log = logging.getLogger(__name__)


class ScheduleFireRow(Base):
    """The ledger: one row per fired slot."""

    __tablename__ = "schedule_fires"
    __table_args__ = (UniqueConstraint("schedule_key", "fire_time", name="uq_schedule_fires_key_slot"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow: Mapped[str] = mapped_column(String(200))
    schedule_key: Mapped[str] = mapped_column(String(300), index=True)
    fire_time: Mapped[datetime] = mapped_column(DateTime)  # UTC, naive
    run_id: Mapped[str] = mapped_column(String(32))
    catch_up: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class ScheduleStateRow(Base):
    """When each schedule (by key) was first served: the start of its slot grid and of 'missed' slots."""

    __tablename__ = "schedule_state"
    schedule_key: Mapped[str] = mapped_column(String(300), primary_key=True)
    workflow: Mapped[str] = mapped_column(String(200))
    first_seen: Mapped[datetime] = mapped_column(DateTime)


OLD_SLOT_KEY = "uq_schedule_fires_slot"  # unique on (workflow, fire_time): dropped one of two schedules


def migrate_ledger(engine) -> bool:
    """Re-key a ledger made with the old (workflow, fire_time) constraint to (schedule_key, fire_time),
    keeping its rows; True when something was migrated. Safe with two servers starting at once."""
    table = ScheduleFireRow.__table__
    if engine.dialect.name != "sqlite":
        names = {c["name"] for c in inspect(engine).get_unique_constraints(table.name)}
        if OLD_SLOT_KEY not in names:
            return False
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {table.name} DROP CONSTRAINT IF EXISTS {OLD_SLOT_KEY}"))
            conn.execute(text(f"ALTER TABLE {table.name} ADD CONSTRAINT uq_schedule_fires_key_slot "
                              "UNIQUE (schedule_key, fire_time)"))
        log.warning("migrated the schedule ledger: one row per schedule and slot (was per workflow and slot)")
        return True
    # SQLite cannot drop a constraint: rebuild the table in one immediate transaction
    raw = engine.raw_connection()
    try:
        db = raw.driver_connection
        old_level = db.isolation_level
        db.isolation_level = None
        try:
            def ddl():
                row = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                                 (table.name,)).fetchone()
                return row[0] if row else ""

            if OLD_SLOT_KEY not in ddl():
                return False
            db.execute("BEGIN IMMEDIATE")
            try:
                if OLD_SLOT_KEY not in ddl():  # another process migrated it meanwhile
                    db.execute("ROLLBACK")
                    return False
                cols = ", ".join(c.name for c in table.columns)
                db.execute(f"ALTER TABLE {table.name} RENAME TO {table.name}_old")
                for index in table.indexes:
                    db.execute(f"DROP INDEX IF EXISTS {index.name}")
                db.execute(str(CreateTable(table).compile(engine)))
                for index in table.indexes:
                    db.execute(str(CreateIndex(index).compile(engine)))
                db.execute(f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {table.name}_old")
                db.execute(f"DROP TABLE {table.name}_old")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        finally:
            db.isolation_level = old_level
    finally:
        raw.close()
    log.warning("migrated the schedule ledger: one row per schedule and slot (was per workflow and slot)")
    return True


def _utc_naive(t: datetime) -> datetime:
    return t.astimezone(timezone.utc).replace(tzinfo=None)


def _aware(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc)


def schedule_key(workflow: str, index: int, schedule) -> str:
    digest = hashlib.sha256(json.dumps(schedule.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:12]
    return f"{workflow}#{index}:{digest}"


def _noop() -> None:  # pragma: no cover - the SlotExecutor never calls job functions
    pass


class SlotExecutor(BaseExecutor):
    """Hands each due slot (the scheduled time, not 'now') to ``fire(job_id, slot)``."""

    def __init__(self, fire):
        super().__init__()
        self._fire = fire
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pixelmill-schedule")

    def shutdown(self, wait=True):
        self._pool.shutdown(wait=wait)

    def _do_submit_job(self, job, run_times):
        alias = job._jobstore_alias

        def task():
            events = []
            now = datetime.now(timezone.utc)
            grace = job.misfire_grace_time
            due = [t for t in run_times if grace is None or now - t <= timedelta(seconds=grace)]
            for t in run_times:
                if t not in due:
                    log.warning("schedule %s: slot %s missed by more than %s s, skipped", job.id, t, grace)
                    events.append(JobExecutionEvent(EVENT_JOB_MISSED, job.id, alias, t))
            if due:
                try:
                    self._fire(job.id, due[-1])
                    events.append(JobExecutionEvent(EVENT_JOB_EXECUTED, job.id, alias, due[-1]))
                except Exception as exc:
                    log.exception("schedule %s: firing slot %s failed", job.id, due[-1])
                    events.append(JobExecutionEvent(EVENT_JOB_ERROR, job.id, alias, due[-1], exception=exc,
                                                    traceback="".join(traceback.format_exception(exc))))
            self._run_job_success(job.id, events)

        self._pool.submit(task)


class Scheduler:
    def __init__(self, runtime, workflows, run_queue, *, misfire_grace: float = 30.0):
        self.runtime = runtime
        self.workflows = workflows
        self.queue = run_queue
        self.misfire_grace = misfire_grace
        self._specs: dict[str, tuple[str, int, object]] = {}  # job id -> (workflow, index, Schedule)
        self._aps = BackgroundScheduler(timezone=timezone.utc, executors={"default": SlotExecutor(self._fire)})
        self.started = False
        Base.metadata.create_all(runtime.store.engine,
                                 tables=[ScheduleFireRow.__table__, ScheduleStateRow.__table__])
        migrate_ledger(runtime.store.engine)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self.sync()
        self._aps.start()
        self.started = True

    def stop(self) -> None:
        if self.started:
            self._aps.shutdown(wait=False)
            self.started = False

    def jobs(self) -> list[dict]:
        out = []
        for job in self._aps.get_jobs():
            spec = self._specs.get(job.id)
            out.append({"id": job.id, "workflow": spec[0] if spec else None,
                        "next_run": job.next_run_time.isoformat() if job.next_run_time else None})
        return out

    # -- building jobs --------------------------------------------------------------------

    def sync(self) -> dict:
        """Make the jobs match the served workflows; returns added and removed job ids."""
        wanted: dict[str, tuple[str, int, object]] = {}
        for loaded in self.workflows.all():
            for i, sched in enumerate(loaded.workflow.on.schedule):
                wanted[schedule_key(loaded.name, i, sched)] = (loaded.name, i, sched)
        removed = [k for k in self._specs if k not in wanted]
        for key in removed:
            try:
                self._aps.remove_job(key)
            except Exception:  # already gone
                pass
            del self._specs[key]
        added = []
        now = datetime.now(timezone.utc)
        for key, spec in wanted.items():
            if key in self._specs:
                continue
            self._specs[key] = spec
            self._add(key, spec, now)
            added.append(key)
        if added or removed:
            log.info("schedules: %d added, %d removed", len(added), len(removed))
        return {"added": added, "removed": removed}

    def _trigger(self, sched, first_seen: datetime):
        if sched.interval is not None:
            return IntervalTrigger(seconds=parse_interval(sched.interval), timezone=zone(sched.timezone),
                                   start_date=_aware(first_seen))
        return build_trigger(sched)

    def _first_seen(self, key: str, workflow: str, now: datetime) -> tuple[datetime, bool]:
        t = ScheduleStateRow.__table__
        engine = self.runtime.store.engine
        with engine.connect() as conn:
            row = conn.execute(select(t.c.first_seen).where(t.c.schedule_key == key)).first()
        if row:
            return row[0], False
        try:
            with self.runtime.store.writing() as conn:
                conn.execute(insert(t).values(schedule_key=key, workflow=workflow, first_seen=_utc_naive(now)))
            return _utc_naive(now), True
        except IntegrityError:  # another server registered it a moment ago
            with engine.connect() as conn:
                return conn.execute(select(t.c.first_seen).where(t.c.schedule_key == key)).scalar_one(), False

    def _last_fired(self, key: str) -> datetime | None:
        t = ScheduleFireRow.__table__
        with self.runtime.store.engine.connect() as conn:
            return conn.execute(select(func.max(t.c.fire_time)).where(t.c.schedule_key == key)).scalar()

    def _add(self, key: str, spec, now: datetime) -> None:
        workflow, _index, sched = spec
        first_seen, new = self._first_seen(key, workflow, now)
        trigger = self._trigger(sched, first_seen)
        if not new:
            self._catch_up(key, sched, trigger, first_seen, now)
        next_run = trigger.get_next_fire_time(None, now + timedelta(microseconds=1))
        grace = None if sched.misfire == "run_once" else max(1, int(round(self.misfire_grace)))
        self._aps.add_job(_noop, trigger, id=key, name=key, replace_existing=True, coalesce=True, max_instances=1,
                          misfire_grace_time=grace, next_run_time=next_run)

    def _missed(self, trigger, after: datetime, now: datetime, cap: int = 10_000) -> tuple[int, datetime | None]:
        """How many slots fall in (after, now] and the latest of them."""
        if isinstance(trigger, IntervalTrigger):
            start = trigger.start_date
            step = trigger.interval_length
            first = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
            if first is None or first > now:
                return 0, None
            n = int((now - start).total_seconds() // step)
            latest = start + timedelta(seconds=n * step)
            count = int(round((latest - first).total_seconds() / step)) + 1
            return count, latest
        count, latest = 0, None
        t = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
        while t is not None and t <= now and count < cap:
            count, latest = count + 1, t
            t = trigger.get_next_fire_time(t, t + timedelta(microseconds=1))
        if count >= cap:  # a very frequent cron over a long outage: find the latest slot from the last day
            t = trigger.get_next_fire_time(None, max(after, now - timedelta(days=1)) + timedelta(microseconds=1))
            while t is not None and t <= now:
                latest = t
                t = trigger.get_next_fire_time(t, t + timedelta(microseconds=1))
        return count, latest

    def _catch_up(self, key: str, sched, trigger, first_seen: datetime, now: datetime) -> None:
        last = self._last_fired(key)
        watermark = _aware(max(first_seen, last) if last else first_seen)
        count, latest = self._missed(trigger, watermark, now)
        if not count:
            return
        if sched.misfire == "skip":
            log.warning("schedule %s: %d slot(s) missed while the service was down; misfire=skip, none run",
                        key, count)
            return
        log.warning("schedule %s: %d slot(s) missed while the service was down; misfire=run_once, running once "
                    "for %s", key, count, latest.isoformat())
        self._fire(key, latest, catch_up=count)

    # -- firing -----------------------------------------------------------------------------

    def _fire(self, key: str, slot: datetime, catch_up: int = 0) -> str | None:
        spec = self._specs.get(key)
        if spec is None:
            return None
        workflow, index, sched = spec
        loaded = self.workflows.get(workflow)
        if loaded is None:
            return None
        try:
            inputs = resolve_inputs(loaded.workflow.inputs, sched.inputs)
        except InputError as exc:
            log.error("schedule %s: inputs are invalid, slot %s not run: %s", key, slot.isoformat(), exc)
            return None
        fire_time = _utc_naive(slot)
        trigger = {"kind": "schedule", "schedule": index, "scheduled_for": _aware(fire_time).isoformat(),
                   "cron": sched.cron, "interval": sched.interval, "timezone": sched.timezone}
        if catch_up:
            trigger["catch_up"] = True
            trigger["missed_slots"] = catch_up
        store = self.runtime.store
        try:
            with store.writing() as conn:
                run_id = store.create_run(loaded.name, inputs=inputs, trigger=trigger, trigger_kind="schedule",
                                          workflow_file=loaded.file, conn=conn)
                conn.execute(insert(ScheduleFireRow).values(
                    workflow=workflow, schedule_key=key, fire_time=fire_time, run_id=run_id,
                    catch_up=1 if catch_up else 0, created_at=datetime.now(timezone.utc).replace(tzinfo=None)))
        except IntegrityError:
            log.info("schedule %s: slot %s already has a run (another process fired it)", key, fire_time)
            return None
        self.queue.enqueue(run_id)
        return run_id
