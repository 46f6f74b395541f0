"""The run store on SQLite and on a real PostgreSQL server: a run's events become visible in id order whatever
the commit order, SSE clients never miss an event of parallel steps, a step retry ends the run, a run
re-executed after a crash keeps one step row per step (the PostgreSQL drills of issue 10)."""

from __future__ import annotations

import json
import threading
import time

import requests

from pixelmill.events import Event, EventKind
from pixelmill.store import RunStore

from .serverutil import Server, write

STORE_BACKENDS = ("sqlite", "postgresql")


def test_delete_orphans_takes_the_rows_of_deleted_runs_only(db_url, tmp_path):
    from sqlalchemy import insert, select

    from pixelmill.db import Base
    from pixelmill.server.callbacks import CallbackRow

    store = RunStore(db_url, tmp_path / "runs")
    try:
        Base.metadata.create_all(store.engine, tables=[CallbackRow.__table__])
        kept, gone = store.create_run("x", inputs={}), store.create_run("x", inputs={})
        with store.writing() as conn:
            for rid in (kept, gone):
                conn.execute(insert(CallbackRow).values(run_id=rid, url="http://127.0.0.1:9/", base_url=""))
        assert store.delete_orphans(CallbackRow.__table__) == 0
        store.delete_run(gone)
        assert store.delete_orphans(CallbackRow.__table__) == 1
        with store.engine.connect() as conn:
            assert [r[0] for r in conn.execute(select(CallbackRow.run_id))] == [kept]
    finally:
        store.close()


def test_events_of_a_run_become_visible_in_id_order(db_url, tmp_path):
    """A transaction that drew an event id but has not committed yet must not let a later event of the same run
    become visible first: a reader that moved past the later id would never see the earlier one."""
    store = RunStore(db_url, tmp_path / "runs")
    try:
        run_id = store.create_run("x", inputs={})
        drawn, release, second_done = threading.Event(), threading.Event(), threading.Event()

        def slow_writer():
            with store.writing() as conn:
                store.record(Event(EventKind.STEP_PROGRESS, run_id, "a", {"value": 1}), conn)
                drawn.set()
                release.wait(10)

        def fast_writer():
            store.record(Event(EventKind.STEP_PROGRESS, run_id, "b", {"value": 1}))
            second_done.set()

        slow = threading.Thread(target=slow_writer)
        slow.start()
        assert drawn.wait(10)
        fast = threading.Thread(target=fast_writer)
        fast.start()
        second_done.wait(0.5)  # without the ordering it commits now, before the first
        seen = [e.id for e in store.events(run_id)]
        release.set()
        slow.join(10)
        fast.join(10)
        later = [e.id for e in store.events(run_id, after=max(seen))]  # what an SSE reader asks next
        assert sorted(seen + later) == [e.id for e in store.events(run_id)], (seen, later)
    finally:
        store.close()


PARALLEL = """
name: par
on: {webhook: {path: par, respond: immediately}}
steps:
"""


def _sse_ids(url: str, out: list, errors: list) -> None:
    try:
        with requests.get(url, stream=True, timeout=60) as resp:
            cur = {}
            for raw in resp.iter_lines(decode_unicode=True):
                if raw == "":
                    if "id" in cur:
                        out.append(int(cur["id"]))
                        if cur.get("event") == "run.finished":
                            return
                    cur = {}
                elif raw and not raw.startswith(":"):
                    key, _, value = raw.partition(":")
                    cur[key] = value.lstrip(" ")
    except Exception as exc:  # reported by the test
        errors.append(repr(exc))


def test_sse_never_skips_events_of_parallel_steps(db_url, tmp_path):
    wf = tmp_path / "wf"
    steps = "".join(f"  - {{id: s{i}, node: test_sleep, with: {{seconds: 0.4, steps: 25}}}}\n" for i in range(6))
    write(wf, "par.yaml", PARALLEL + steps)
    srv = Server(tmp_path / "home", wf, {"PIXELMILL_DB_URL": db_url, "PIXELMILL_WORKERS": "4",
                                         "PIXELMILL_SCHEDULER": "0", "PIXELMILL_MAX_WORKERS": "8"}).start()
    try:
        runs = [srv.post("/webhook/par", json={}).json()["run_id"] for _ in range(4)]
        streams = {rid: [[], [], []] for rid in runs}  # three clients per run
        errors: list = []
        threads = [threading.Thread(target=_sse_ids, args=(f"{srv.url}/api/v1/runs/{rid}/events", ids, errors))
                   for rid, clients in streams.items() for ids in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        for rid, clients in streams.items():
            assert srv.wait_run(rid)["status"] == "succeeded"
            stored = [int(line[4:]) for line in srv.get(f"/api/v1/runs/{rid}/events").text.splitlines()
                      if line.startswith("id: ")]
            assert len(stored) >= 6 * 4 + 3  # queued, started, finished + per step: started, progress, finished
            for ids in clients:
                assert ids == stored, f"run {rid}: missed {sorted(set(stored) - set(ids))}"
    finally:
        srv.stop()


RETRY = """
name: retry
on: {{webhook: {{path: retry, respond: immediately}}}}
steps:
  - {{id: f, node: test_flaky, with: {{ok_file: "{ok}"}}, retry: {{max_attempts: 2, delay: 0}}}}
"""


def test_step_retry_ends_the_run(db_url, tmp_path):
    wf = tmp_path / "wf"
    write(wf, "retry.yaml", RETRY.format(ok=tmp_path / "never"))
    srv = Server(tmp_path / "home", wf, {"PIXELMILL_DB_URL": db_url, "PIXELMILL_SCHEDULER": "0"}).start()
    try:
        runs = [srv.post("/webhook/retry", json={}).json()["run_id"] for _ in range(3)]
        for rid in runs:
            run = srv.wait_run(rid, timeout=20)
            assert run["status"] == "failed"
            assert [(s["step_id"], s["status"], s["attempts"]) for s in run["steps"]] == [("f", "failed", 2)]
        assert not any("unexpected error" in line for line in srv.log)
    finally:
        srv.stop()


CRASH = """
name: crash
on: {{webhook: {{path: crash, respond: immediately}}}}
steps:
  - {{id: a, node: test_sleep, with: {{seconds: 0.05, steps: 1}}}}
  - {{id: b, node: test_sleep, needs: [a], with: {{seconds: 1.5, steps: 3}}}}
  - {{id: c, node: test_count, needs: [b], with: {{log: "{mark}"}}}}
"""


def test_runs_interrupted_by_kill9_resume_and_finish_once(db_url, tmp_path):
    wf = tmp_path / "wf"
    mark = tmp_path / "c.log"
    write(wf, "crash.yaml", CRASH.format(mark=mark))
    env = {"PIXELMILL_DB_URL": db_url, "PIXELMILL_WORKERS": "4", "PIXELMILL_SCHEDULER": "0"}
    srv = Server(tmp_path / "home", wf, env).start()
    try:
        runs = [srv.post("/webhook/crash", json={}).json()["run_id"] for _ in range(8)]
        for rid in runs[:4]:
            srv.wait_run(rid, done=("running",))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # wait until the four running runs are inside step b
            steps = [srv.get(f"/api/v1/runs/{rid}").json()["steps"] for rid in runs]
            if sum(any(s["step_id"] == "b" and s["status"] == "running" for s in st) for st in steps) >= 4:
                break
            time.sleep(0.05)
    finally:
        srv.kill9()
    srv2 = Server(tmp_path / "home", wf, env).start()
    try:
        for rid in runs:
            run = srv2.wait_run(rid, timeout=40)
            assert run["status"] == "succeeded", run
            assert sorted(s["step_id"] for s in run["steps"]) == ["a", "b", "c"]  # one row per step
        assert sorted(line.split()[0] for line in mark.read_text().splitlines()) == sorted(runs)  # step c ran once per run
        for rid in runs:
            events = srv2.get(f"/api/v1/runs/{rid}/events").text
            assert events.count("event: run.finished") == 1
            a_starts = sum(1 for block in events.split("\n\n")
                           if "event: step.started" in block and json.loads(block.split("data: ", 1)[1])
                           ["step_id"] == "a")
            assert a_starts == 1  # the finished step a was not run again after the crash
        assert not any("unexpected error" in line or "UniqueViolation" in line for line in srv2.log)
    finally:
        srv2.stop()


def test_event_relay_publishes_an_event_committed_after_a_later_id(pg_cluster, tmp_path):
    """Celery mode's relay (store -> this process's bus): ids of different runs may commit out of order; the
    one committed late is still published, once."""
    from types import SimpleNamespace

    from pixelmill.events import EventBus
    from pixelmill.server.celery_queue import EventRelay

    store = RunStore(pg_cluster.create_database(), tmp_path / "runs")
    bus = EventBus()
    got: list[int] = []
    bus.subscribe(lambda ev: got.append(ev.id))
    relay = EventRelay(SimpleNamespace(store=store, bus=bus), interval=3600)
    try:
        a, b = store.create_run("x", inputs={}), store.create_run("x", inputs={})
        relay.start()
        drawn, release = threading.Event(), threading.Event()

        def slow():
            with store.writing() as conn:
                store.record(Event(EventKind.STEP_PROGRESS, a, "s", {"value": 1}), conn)
                drawn.set()
                release.wait(10)

        t = threading.Thread(target=slow)
        t.start()
        assert drawn.wait(10)
        late_id = store.record(Event(EventKind.STEP_PROGRESS, b, "s", {"value": 1}))
        relay.poll()
        assert got == [late_id]
        release.set()
        t.join(10)
        relay.poll()
        relay.poll()
        assert got == [late_id, late_id - 1]  # the earlier id, committed later, once
    finally:
        relay.stop()
        store.close()
