"""The run store: runs, step runs, events and the output cache, in SQLite (WAL) or Postgres.

Writes are short transactions through SQLAlchemy Core; a run's files live in an artifact store
(``pixelmill.artifacts``; by default one folder per run beside the database).
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import bindparam, create_engine, delete, event, func, insert, select, text, update
from sqlalchemy.engine import Engine

from .artifacts import ArtifactStore, FolderArtifacts
from .db import Base, CacheRow, EventRow, RunRow, StepRow
from .events import Event, EventKind
from .status import RunStatus, StepStatus

_RUNS, _STEPS, _EVENTS = RunRow.__table__, StepRow.__table__, EventRow.__table__
# Prebuilt statements executed with parameter dicts: compiled once, cheap per call (the hot path of every run).
_INSERT_RUN = insert(_RUNS)
_INSERT_EVENT = insert(_EVENTS)
_INSERT_STEP = insert(_STEPS)
_UPDATE_RUN = update(_RUNS).where(_RUNS.c.id == bindparam("b_id"))
_CLAIM = update(_RUNS).where(_RUNS.c.id == bindparam("b_id"), _RUNS.c.status == RunStatus.QUEUED.value)
# Taken before an event of a run is written (PostgreSQL): event ids come from a sequence at insert time but
# become visible at commit, so two transactions of one run could commit out of id order and a reader asking
# for ``id > N`` would skip the one committed late. Holding the run's row lock from before the id is drawn
# until commit makes a run's events commit in id order (SQLite has one writer at a time: already ordered).
_LOCK_RUN = select(_RUNS.c.id).where(_RUNS.c.id == bindparam("b_id")).with_for_update()
_UPDATE_STEP = update(_STEPS).where(_STEPS.c.run_id == bindparam("b_run"), _STEPS.c.step_id == bindparam("b_step"))


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _proc_start(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def process_owner() -> str:
    """Identifies this process across pid reuse: host, pid and the process start time."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_proc_start(pid)}"


def owner_alive(owner: str | None) -> bool:
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_s, _, start = rest.partition(":")
    if host != socket.gethostname():
        return True  # another machine's process: we cannot tell, so we do not touch its runs
    try:
        pid = int(pid_s)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return start == "?" or _proc_start(pid) == start


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class RunStore:
    def __init__(self, url: str, artifacts_root: Path | None = None, *, artifacts: ArtifactStore | None = None):
        self.url = url
        self.engine = make_engine(url)
        if artifacts is None:
            if artifacts_root is None:
                raise TypeError("RunStore needs artifacts_root or an artifact store")
            artifacts = FolderArtifacts(artifacts_root)
        self.artifacts = artifacts
        if url.startswith("postgresql"):
            # processes starting together (an API and its workers) would race on CREATE TABLE: one at a time
            with self.engine.begin() as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(7342001)"))
                Base.metadata.create_all(conn)
        else:
            Base.metadata.create_all(self.engine)
        self.owner = process_owner()
        # SQLite has one writer at a time; queueing writers of this process on a lock keeps them out of
        # SQLite's busy handler, which sleeps 1 to 100 ms per retry (the tail latency under load).
        self._write_lock = threading.Lock() if url.startswith("sqlite") else nullcontext()
        self._row_locks = not url.startswith("sqlite")

    @property
    def artifacts_root(self) -> Path:
        """The folder of a folder artifact store (code that hands paths to libraries reads here)."""
        return Path(self.artifacts.root)

    @contextmanager
    def writing(self):
        """A write transaction (serialized within this process on SQLite)."""
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    # -- runs ---------------------------------------------------------------

    def create_run(self, workflow: str, *, inputs: dict, trigger: dict | None = None, trigger_kind: str = "manual",
                   workflow_file: str = "", run_id: str | None = None, retry_of: str | None = None,
                   status: RunStatus = RunStatus.QUEUED, conn=None) -> str:
        """Write a run row and its ``run.queued`` event; pass ``conn`` to join a caller's transaction."""
        run_id = run_id or uuid.uuid4().hex
        if conn is None:
            with self.writing() as conn:
                return self.create_run(workflow, inputs=inputs, trigger=trigger, trigger_kind=trigger_kind,
                                       workflow_file=workflow_file, run_id=run_id, retry_of=retry_of,
                                       status=status, conn=conn)
        now = utcnow()
        conn.execute(_INSERT_RUN, dict(
            id=run_id, workflow=workflow, workflow_file=workflow_file, status=status.value,
            trigger_kind=trigger_kind, trigger=trigger or {}, inputs=inputs, created_at=now,
            retry_of=retry_of, cancel_requested=False, outputs=None, error=None, started_at=None, finished_at=None,
            owner=None,
        ))
        conn.execute(_INSERT_EVENT, dict(run_id=run_id, kind=EventKind.RUN_QUEUED.value, step_id=None,
                                         data={"workflow": workflow, "trigger_kind": trigger_kind},
                                         ts=now.replace(tzinfo=timezone.utc).timestamp()))
        return run_id

    def claim(self, run_id: str) -> bool:
        """Move a queued run to running for this process; False if someone else has it or it is no longer queued."""
        with self.writing() as conn:
            res = conn.execute(_CLAIM, {"b_id": run_id, "status": RunStatus.RUNNING.value, "owner": self.owner,
                                        "started_at": utcnow()})
            return res.rowcount == 1

    def get_run(self, run_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(RunRow.__table__).where(RunRow.id == run_id)).mappings().first()
            if row is None:
                return None
            steps = conn.execute(select(StepRow.__table__).where(StepRow.run_id == run_id).order_by(StepRow.id)) \
                .mappings().all()
        run = _run_dict(row)
        run["steps"] = [_step_dict(s) for s in steps]
        return run

    def list_runs(self, *, workflow: str | None = None, status: str | None = None, limit: int = 50,
                  offset: int = 0) -> list[dict]:
        q = select(RunRow.__table__).order_by(RunRow.created_at.desc(), RunRow.id).limit(limit).offset(offset)
        if workflow:
            q = q.where(RunRow.workflow == workflow)
        if status:
            q = q.where(RunRow.status == status)
        with self.engine.connect() as conn:
            return [_run_dict(r) for r in conn.execute(q).mappings()]

    def count_runs(self, *, workflow: str | None = None, status: str | None = None) -> int:
        q = select(func.count()).select_from(RunRow)
        if workflow:
            q = q.where(RunRow.workflow == workflow)
        if status:
            q = q.where(RunRow.status == status)
        with self.engine.connect() as conn:
            return conn.execute(q).scalar_one()

    def request_cancel(self, run_id: str) -> str | None:
        """Cancel a queued run at once, or flag a running one; returns the status after the call."""
        with self.writing() as conn:
            conn.execute(update(RunRow).where(RunRow.id == run_id, RunRow.status == RunStatus.QUEUED.value)
                         .values(status=RunStatus.CANCELLED.value, finished_at=utcnow(), cancel_requested=True))
            conn.execute(update(RunRow).where(RunRow.id == run_id, RunRow.status == RunStatus.RUNNING.value)
                         .values(cancel_requested=True))
            row = conn.execute(select(RunRow.status).where(RunRow.id == run_id)).first()
        return row[0] if row else None

    def cancel_requested(self, run_id: str) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(select(RunRow.cancel_requested).where(RunRow.id == run_id)).first()
        return bool(row and row[0])

    def recover_interrupted(self, requeue: bool = False, dead_owners: frozenset[str] | set[str] = frozenset(),
                            run_id: str | None = None) -> list[str]:
        """Runs left ``running`` by a dead process on this host, or by one of ``dead_owners`` (workers whose
        heartbeat stopped, on any host), become ``interrupted`` (or ``queued`` again); ``run_id`` limits it
        to one run."""
        q = select(RunRow.id, RunRow.owner).where(RunRow.status == RunStatus.RUNNING.value)
        if run_id is not None:
            q = q.where(RunRow.id == run_id)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        dead = [(rid, owner) for rid, owner in rows if owner in dead_owners or not owner_alive(owner)]
        new = RunStatus.QUEUED if requeue else RunStatus.INTERRUPTED
        done = []
        with self.writing() as conn:
            for rid, owner in dead:
                res = conn.execute(update(RunRow).where(RunRow.id == rid, RunRow.status == RunStatus.RUNNING.value,
                                                        RunRow.owner == owner if owner else RunRow.owner.is_(None))
                                   .values(
                    status=new.value, owner=None,
                    finished_at=None if requeue else utcnow(),
                    error=None if requeue else {"message": "the process running this run died", "type": "Interrupted"},
                ))
                if not res.rowcount:
                    continue  # claimed again meanwhile
                conn.execute(update(StepRow).where(StepRow.run_id == rid, StepRow.status == StepStatus.RUNNING.value)
                             .values(status=StepStatus.INTERRUPTED.value, finished_at=utcnow()))
                done.append(rid)
        return done

    def finished_steps(self, run_id: str) -> dict[str, dict]:
        """Steps of this run that succeeded (or came from the cache) before it was interrupted, by step id."""
        ok = (StepStatus.SUCCEEDED.value, StepStatus.CACHED.value)
        t = _STEPS
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.step_id, t.c.status, t.c.outputs, t.c.attempts, t.c.duration_s)
                                .where(t.c.run_id == run_id, t.c.status.in_(ok))).mappings().all()
        return {r["step_id"]: dict(r) for r in rows}

    def delete_run(self, run_id: str) -> bool:
        with self.writing() as conn:
            conn.execute(delete(EventRow).where(EventRow.run_id == run_id))
            conn.execute(delete(StepRow).where(StepRow.run_id == run_id))
            res = conn.execute(delete(RunRow).where(RunRow.id == run_id))
        self.artifacts.delete(run_id)
        return res.rowcount == 1

    def prune(self, older_than: datetime) -> int:
        """Delete finished runs created before ``older_than`` with their steps, events and artifacts."""
        finished = [s.value for s in RunStatus if s.finished]
        with self.engine.connect() as conn:
            ids = [r[0] for r in conn.execute(
                select(RunRow.id).where(RunRow.created_at < older_than, RunRow.status.in_(finished)))]
        for rid in ids:
            self.delete_run(rid)
        return len(ids)

    def prune_finished(self, *, older_than: datetime | None = None, keep_newest: int | None = None,
                       batch: int = 500) -> int:
        """Delete finished runs created before ``older_than``, or beyond the newest ``keep_newest`` finished
        runs, with their steps, events and artifacts, ``batch`` runs per transaction (queued and running
        runs are never deleted); returns how many were deleted."""
        finished = [s.value for s in RunStatus if s.finished]
        q = select(RunRow.id).where(RunRow.status.in_(finished))
        if older_than is not None:
            q = q.where(RunRow.created_at < older_than)
        if keep_newest is not None:
            q = q.order_by(RunRow.created_at.desc(), RunRow.id.desc()).offset(max(0, keep_newest))
        with self.engine.connect() as conn:
            ids = [r[0] for r in conn.execute(q)]
        for i in range(0, len(ids), batch):
            self._delete_runs(ids[i:i + batch])
        return len(ids)

    def _delete_runs(self, ids: list[str]) -> None:
        with self.writing() as conn:
            conn.execute(delete(EventRow).where(EventRow.run_id.in_(ids)))
            conn.execute(delete(StepRow).where(StepRow.run_id.in_(ids)))
            conn.execute(delete(RunRow).where(RunRow.id.in_(ids)))
        for rid in ids:
            self.artifacts.delete(rid)

    def delete_orphans(self, table) -> int:
        """Delete the rows of ``table`` whose ``run_id`` names no run any more (a table another module keeps
        per run, e.g. the server's callbacks, once its runs are deleted); returns how many rows went."""
        has_run = select(_RUNS.c.id).where(_RUNS.c.id == table.c.run_id).exists()
        with self.writing() as conn:
            return conn.execute(delete(table).where(~has_run)).rowcount

    def reclaim_space(self) -> int:
        """Give the space of deleted rows back to the file system; returns the bytes freed.

        SQLite: the first call switches the database to ``auto_vacuum=INCREMENTAL`` with one ``VACUUM``
        (a full rewrite); later calls run ``PRAGMA incremental_vacuum``, which only returns free pages.
        PostgreSQL: autovacuum makes the space reusable on its own; giving it back to the operating system
        needs ``VACUUM FULL`` (an exclusive lock), left to the operator, so this returns 0."""
        if not self.url.startswith("sqlite"):
            return 0
        path = self.url.split("///", 1)[-1]
        if not path or path == ":memory:":
            return 0

        def size() -> int:
            return sum(Path(path + suffix).stat().st_size for suffix in ("", "-wal") if Path(path + suffix).exists())

        before = size()
        with self._write_lock:
            raw = self.engine.raw_connection()
            try:
                dbapi = raw.driver_connection
                old = dbapi.isolation_level
                dbapi.isolation_level = None  # VACUUM cannot run inside a transaction
                try:
                    mode = dbapi.execute("PRAGMA auto_vacuum").fetchone()[0]
                    if mode != 2:
                        dbapi.execute("PRAGMA auto_vacuum=INCREMENTAL")
                        dbapi.execute("VACUUM")
                    else:
                        dbapi.executescript("PRAGMA incremental_vacuum;")  # steps it to the end
                    dbapi.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                finally:
                    dbapi.isolation_level = old
            finally:
                raw.close()
        return max(0, before - size())

    # -- events: the executor records each one here before anyone else sees it --

    def record(self, ev: Event, conn=None) -> int:
        """Write an event and apply it to the run and step rows, in one transaction (``conn`` joins a caller's);
        a run's events become visible to readers in id order."""
        if conn is None:
            with self.writing() as conn:
                return self._record(ev, conn)
        return self._record(ev, conn)

    def _record(self, ev: Event, conn) -> int:
        now = datetime.fromtimestamp(ev.ts, timezone.utc).replace(tzinfo=None)
        if self._row_locks:
            conn.execute(_LOCK_RUN, {"b_id": ev.run_id})
        res = conn.execute(_INSERT_EVENT, dict(run_id=ev.run_id, kind=ev.kind.value, step_id=ev.step_id,
                                               data=ev.data, ts=ev.ts))
        self._apply(conn, ev, now)
        return res.inserted_primary_key[0]

    def _apply(self, conn, ev: Event, now: datetime) -> None:
        d = ev.data
        if ev.kind is EventKind.RUN_STARTED:
            conn.execute(_UPDATE_RUN, dict(b_id=ev.run_id, status=RunStatus.RUNNING.value, owner=self.owner,
                                           started_at=now))
        elif ev.kind is EventKind.RUN_FINISHED:
            conn.execute(_UPDATE_RUN, dict(b_id=ev.run_id, status=d["status"], outputs=d.get("outputs"),
                                           error=d.get("error"), finished_at=now))
        elif ev.kind is EventKind.STEP_STARTED:
            values = dict(status=StepStatus.RUNNING.value, attempts=d.get("attempt", 1), started_at=now,
                          inputs=d.get("inputs"), outputs=None, error=None, finished_at=None, duration_s=None)
            # update first: a retried attempt, or a step run again after a crash, keeps its one row (an
            # INSERT that fails on the unique key would abort the whole transaction on PostgreSQL)
            res = conn.execute(_UPDATE_STEP, dict(b_run=ev.run_id, b_step=ev.step_id, **values))
            if res.rowcount == 0:
                conn.execute(_INSERT_STEP, dict(run_id=ev.run_id, step_id=ev.step_id, node_type=d["node"],
                                                node_version=d.get("version", "1"), **values))
        elif ev.kind is EventKind.STEP_RETRYING:
            conn.execute(_UPDATE_STEP, dict(b_run=ev.run_id, b_step=ev.step_id, attempts=d.get("attempt", 1),
                                            error=d.get("error")))
        elif ev.kind is EventKind.STEP_FINISHED and d.get("resumed"):
            pass  # a step finished before a crash, kept on resume: its row already holds the result
        elif ev.kind in (EventKind.STEP_FINISHED, EventKind.STEP_FAILED, EventKind.STEP_SKIPPED):
            values = dict(status=d["status"], finished_at=now, outputs=d.get("outputs"), error=d.get("error"),
                          duration_s=d.get("duration_s"), attempts=d.get("attempts", 0))
            res = conn.execute(_UPDATE_STEP, dict(b_run=ev.run_id, b_step=ev.step_id, **values))
            if res.rowcount == 0:  # skipped or cached steps never "started"
                conn.execute(_INSERT_STEP, dict(run_id=ev.run_id, step_id=ev.step_id, node_type=d.get("node", ""),
                                                node_version=d.get("version", "1"), started_at=now,
                                                inputs=d.get("inputs"), **values))

    def events(self, run_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        q = (select(EventRow.__table__).where(EventRow.run_id == run_id, EventRow.id > after)
             .order_by(EventRow.id).limit(limit))
        with self.engine.connect() as conn:
            return [Event(EventKind(r["kind"]), r["run_id"], r["step_id"], r["data"] or {}, r["ts"], r["id"])
                    for r in conn.execute(q).mappings()]

    # -- output cache -------------------------------------------------------

    def cache_get(self, key: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(CacheRow.outputs).where(CacheRow.key == key)).first()
        return row[0] if row else None

    def cache_put(self, key: str, node_type: str, outputs: dict, run_id: str) -> None:
        with self.writing() as conn:
            conn.execute(delete(CacheRow).where(CacheRow.key == key))
            conn.execute(insert(CacheRow).values(key=key, node_type=node_type, outputs=outputs, run_id=run_id,
                                                 created_at=utcnow()))


def _iso(value):
    return value.replace(tzinfo=timezone.utc).isoformat() if value else None


def _run_dict(row) -> dict:
    d = dict(row)
    for k in ("created_at", "started_at", "finished_at"):
        d[k] = _iso(d[k])
    return d


def _step_dict(row) -> dict:
    d = dict(row)
    d.pop("id", None)
    for k in ("started_at", "finished_at"):
        d[k] = _iso(d[k])
    return d
