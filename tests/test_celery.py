"""Celery mode against a real redis-server and PostgreSQL started here: webhook -> broker -> worker process ->
result; kill -9 of a worker mid-run; queues routed to their own workers; cancel across processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .redisutil import start_redis
from .serverutil import Server, write

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def broker():
    proc, url = start_redis()
    if proc is None:
        pytest.skip(url)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def cluster(tmp_path, broker, pg_cluster):
    db = pg_cluster.create_database()
    env = {"PIXELMILL_DB_URL": db, "PIXELMILL_BROKER_URL": broker, "PIXELMILL_HOME": str(tmp_path / "home"),
           "PIXELMILL_HEARTBEAT_INTERVAL": "0.5", "PYTHONUNBUFFERED": "1"}
    c = Cluster(tmp_path, env)
    yield c
    c.stop()


class Cluster:
    def __init__(self, root: Path, env: dict):
        self.root, self.env = root, env
        self.wf = root / "wf"
        self.workers: list[subprocess.Popen] = []
        self.apis: list[Server] = []

    def start_api(self, **extra: str) -> Server:
        env = {**self.env, "PIXELMILL_EXECUTOR": "celery", "PIXELMILL_SCHEDULER": "0",
               "PIXELMILL_SWEEP_INTERVAL": "0.3", "PIXELMILL_WORKER_STALE_AFTER": "3", **extra}
        api = Server(self.root / "home", self.wf, env).start()
        self.apis.append(api)
        return api

    def start_worker(self, queues: str = "default,gpu", **extra: str) -> subprocess.Popen:
        log = open(self.root / f"worker-{len(self.workers)}.log", "w")
        proc = subprocess.Popen([sys.executable, str(HERE / "worker_test_app.py"), str(self.wf), queues],
                                env={**os.environ, **self.env, **extra}, stdout=log, stderr=subprocess.STDOUT)
        self.workers.append(proc)
        return proc

    def worker_log(self, index: int) -> str:
        return (self.root / f"worker-{index}.log").read_text(errors="replace")

    def stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.stop_apis(self.apis)

    @staticmethod
    def stop_apis(apis) -> None:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max(1, len(apis))) as pool:  # each waits for its process: all at once
            list(pool.map(lambda api: api.stop(), apis))

    def sql(self, query: str, **params) -> list:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.env["PIXELMILL_DB_URL"])
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(query), params))
        finally:
            engine.dispose()

    def owner_pid(self, run: dict) -> int:
        """The pid of the process that executed the run (the store's owner: host:pid:start)."""
        owner = self.sql("SELECT owner FROM runs WHERE id = :i", i=run["id"])[0][0]
        return int(owner.split(":")[1])


SLEEP = """
name: nap
on: {webhook: {path: nap, respond: when_done}}
steps:
  - {id: nap, node: test_sleep, with: {seconds: 0.2, steps: 2}}
outputs: {slept: "${{ steps.nap.outputs.slept }}", run: "${{ steps.nap.outputs.run_id }}"}
"""


def test_webhook_run_executes_on_a_worker_and_returns_its_result(cluster):
    write(cluster.wf, "nap.yaml", SLEEP)
    write(cluster.wf, "idle.yaml", QUEUED.format(name="idle", queue="idle"))
    worker = cluster.start_worker()
    api = cluster.start_api()
    r = api.post("/webhook/nap", json={}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "succeeded" and body["outputs"]["slept"] == 0.2, body
    run = api.get(f"/api/v1/runs/{body['run_id']}").json()
    assert run["status"] == "succeeded" and cluster.owner_pid(run) == worker.pid  # executed by the worker
    events = api.get(f"/api/v1/runs/{body['run_id']}/events").text
    ids = [int(line[4:]) for line in events.splitlines() if line.startswith("id: ")]
    assert ids == sorted(ids) and "event: run.finished" in events
    workers = api.get("/api/v1/workers").json()["workers"]
    assert [(w["queues"], w["alive"]) for w in workers] == [(["default", "gpu"], True)]
    metrics = api.get("/metrics").text
    assert 'pixelmill_worker_processes{state="alive"} 1' in metrics
    assert 'pixelmill_runs_finished_total{status="succeeded"} 1' in metrics  # relayed from the worker
    for _ in range(2):  # a queue no worker listens to: the runs wait there
        assert api.post("/webhook/idle", json={}).status_code == 202
    assert 'pixelmill_queue_depth_by_queue{queue="idle"} 2' in api.get("/metrics").text


CRASH = """
name: crash
on: {{webhook: {{path: crash, respond: immediately}}}}
steps:
  - {{id: a, node: test_count, with: {{log: "{log}"}}}}
  - {{id: b, node: test_sleep, needs: [a], with: {{seconds: 2.0, steps: 4}}}}
  - {{id: c, node: test_count, needs: [b], with: {{log: "{log}"}}}}
"""


def test_kill9_of_a_worker_mid_run_finishes_the_run_once_elsewhere(cluster):
    log = cluster.root / "count.log"
    write(cluster.wf, "crash.yaml", CRASH.format(log=log))
    first = cluster.start_worker()
    api = cluster.start_api()
    run_id = api.post("/webhook/crash", json={}).json()["run_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        steps = {s["step_id"]: s["status"] for s in api.get(f"/api/v1/runs/{run_id}").json()["steps"]}
        if steps.get("b") == "running":
            break
        time.sleep(0.05)
    assert steps.get("b") == "running", steps
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    second = cluster.start_worker()
    run = api.wait_run(run_id, timeout=60)
    assert run["status"] == "succeeded", run
    assert cluster.owner_pid(run) == second.pid
    assert [line.split()[1] for line in log.read_text().splitlines()] == ["a", "c"]  # a was not run again
    events = [json.loads(block.split("data: ", 1)[1]) for block in api.get(f"/api/v1/runs/{run_id}/events")
              .text.split("\n\n") if "data: " in block]
    assert sum(e["kind"] == "run.finished" for e in events) == 1
    assert [e["step_id"] for e in events if e["kind"] == "step.started"] == ["a", "b", "b", "c"]
    time.sleep(1.0)  # a late redelivery of the message must not run it again
    assert [line.split()[1] for line in log.read_text().splitlines()] == ["a", "c"]


QUEUED = """
name: {name}
queue: {queue}
on: {{webhook: {{path: {name}, respond: immediately}}}}
steps:
  - {{id: s, node: test_sleep, with: {{seconds: 0.05, steps: 1}}}}
"""


def test_two_workers_on_different_queues_get_only_their_own_runs(cluster):
    write(cluster.wf, "one.yaml", QUEUED.format(name="one", queue="q1"))
    write(cluster.wf, "two.yaml", QUEUED.format(name="two", queue="q2"))
    w1 = cluster.start_worker("q1")
    w2 = cluster.start_worker("q2")
    api = cluster.start_api()
    runs = {name: [api.post(f"/webhook/{name}", json={}).json()["run_id"] for _ in range(4)] for name in ("one", "two")}
    for name, pid in (("one", w1.pid), ("two", w2.pid)):
        for rid in runs[name]:
            run = api.wait_run(rid, timeout=60)
            assert run["status"] == "succeeded" and cluster.owner_pid(run) == pid, name


def test_cancel_a_run_executing_on_a_worker(cluster):
    write(cluster.wf, "long.yaml", """
name: long
on: {webhook: {path: long, respond: immediately}}
steps:
  - {id: s, node: test_sleep, with: {seconds: 20, steps: 200}}
""")
    cluster.start_worker()
    api = cluster.start_api()
    run_id = api.post("/webhook/long", json={}).json()["run_id"]
    api.wait_run(run_id, done=("running",), timeout=30)
    time.sleep(0.3)
    t0 = time.monotonic()
    assert api.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
    run = api.wait_run(run_id, timeout=15)
    assert run["status"] == "cancelled"
    assert time.monotonic() - t0 < 5


def _sse_ids(url: str) -> list[int]:
    import requests

    ids, cur = [], {}
    with requests.get(url, stream=True, timeout=60) as resp:
        for raw in resp.iter_lines(decode_unicode=True):
            if raw == "":
                if "id" in cur:
                    ids.append(int(cur["id"]))
                    if cur.get("event") == "run.finished":
                        break
                cur = {}
            elif raw and not raw.startswith(":"):
                key, _, value = raw.partition(":")
                cur[key] = value.lstrip(" ")
    return ids


def test_sse_of_a_run_on_a_worker_arrives_live_without_gaps(cluster):
    steps = "".join(f"  - {{id: s{i}, node: test_sleep, with: {{seconds: 0.6, steps: 12}}}}\n" for i in range(4))
    write(cluster.wf, "par.yaml", "name: par\non: {webhook: {path: par, respond: immediately}}\nsteps:\n" + steps)
    cluster.start_worker()
    api = cluster.start_api()
    run_id = api.post("/webhook/par", json={}).json()["run_id"]
    t0 = time.monotonic()
    live = _sse_ids(f"{api.url}/api/v1/runs/{run_id}/events")
    assert time.monotonic() - t0 < 30
    stored = [int(line[4:]) for line in api.get(f"/api/v1/runs/{run_id}/events").text.splitlines()
              if line.startswith("id: ")]
    assert live == stored and len(stored) >= 4 * 3 + 3


BURST = """
name: burst
on: {{webhook: {{path: burst, respond: immediately}}}}
steps:
  - {{id: count, node: test_count, with: {{log: "{log}"}}}}
"""


def test_kill9_of_the_api_during_a_burst_every_accepted_run_finishes_once(cluster):
    import threading

    import requests

    log = cluster.root / "burst.log"
    write(cluster.wf, "burst.yaml", BURST.format(log=log))
    cluster.start_worker()
    cluster.start_worker()
    api = cluster.start_api()
    accepted: list[str] = []
    lock = threading.Lock()

    def fire(k):
        s = requests.Session()
        for _ in range(k):
            try:
                r = s.post(api.url + "/webhook/burst", json={}, timeout=10)
            except requests.RequestException:
                return  # the API is gone
            if r.status_code == 202:
                with lock:
                    accepted.append(r.json()["run_id"])

    threads = [threading.Thread(target=fire, args=(25,)) for _ in range(8)]
    for t in threads:
        t.start()
    while len(accepted) < 60:
        time.sleep(0.005)
    api.kill9()
    for t in threads:
        t.join(30)
    assert 60 <= len(accepted) < 200
    api2 = cluster.start_api()
    for rid in accepted:
        assert api2.wait_run(rid, timeout=60)["status"] == "succeeded"
    time.sleep(1.0)
    executed = [line.split()[0] for line in log.read_text().splitlines()]
    assert len(executed) == len(set(executed))  # nothing ran twice
    assert set(accepted) <= set(executed)  # every accepted run ran


TICK = """
name: tick
on: {{schedule: [{{interval: 0.5s}}]}}
steps:
  - {{id: count, node: test_count, with: {{log: "{log}"}}}}
"""


def test_schedules_fire_once_with_two_api_processes(cluster):
    """Two `serve` processes share Redis and PostgreSQL and both serve the schedule: the ledger's slot
    claim lets one of them create each slot's run; every run executes once."""
    log = cluster.root / "tick.log"
    write(cluster.wf, "tick.yaml", TICK.format(log=log))
    from concurrent.futures import ThreadPoolExecutor

    cluster.start_worker()
    with ThreadPoolExecutor(2) as pool:  # started together, as a deployment's API replicas are
        a, b = pool.map(lambda _: cluster.start_api(PIXELMILL_SCHEDULER="1"), range(2))
    time.sleep(2.5)  # both serve the schedule for 5 slots or more
    cluster.stop_apis([a, b])
    fires = cluster.sql("SELECT fire_time, run_id FROM schedule_fires ORDER BY fire_time")
    runs = {r[0] for r in cluster.sql("SELECT id FROM runs WHERE trigger_kind = 'schedule'")}
    slots = [f[0] for f in fires]
    assert len(slots) >= 5 and len(set(slots)) == len(slots)  # each slot once
    assert runs == {f[1] for f in fires} and len(runs) == len(fires)  # one run per slot, none outside the ledger
    steps = {round((t2 - t1).total_seconds(), 3) for t1, t2 in zip(slots, slots[1:])}
    assert steps and all(s > 0 and (s / 0.5) == int(s / 0.5) for s in steps), steps  # slots of one grid
    lost = sum("another process fired it" in line for srv in (a, b) for line in srv.log)
    assert lost >= 3, lost  # both processes tried those slots: the claim decided which one creates the run
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = cluster.sql("SELECT count(*) FROM runs WHERE status <> 'succeeded'")[0][0]
        if not left:
            break
        time.sleep(0.1)
    assert not left
    executed = [line.split()[0] for line in log.read_text().splitlines()]
    assert sorted(executed) == sorted(runs)  # each run executed exactly once


def _wait_step(api, run_id: str, step: str, status: str = "running", timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = {s["step_id"]: s["status"] for s in api.get(f"/api/v1/runs/{run_id}").json()["steps"]}
        if steps.get(step) == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"step {step} is not {status}: {steps}")


THREE = """
name: three
on: {{webhook: {{path: three, respond: immediately}}}}
steps:
  - {{id: a, node: test_count, with: {{log: "{log}"}}}}
  - {{id: b, node: test_sleep, needs: [a], with: {{seconds: {seconds}, steps: 20}}}}
  - {{id: c, node: test_count, needs: [b], with: {{log: "{log}"}}}}
"""


def test_sigterm_worker_finishes_its_run_within_the_grace(cluster):
    log = cluster.root / "count.log"
    write(cluster.wf, "three.yaml", THREE.format(log=log, seconds=2.0))
    worker = cluster.start_worker(PIXELMILL_SHUTDOWN_GRACE="20")
    api = cluster.start_api()
    run_id = api.post("/webhook/three", json={}).json()["run_id"]
    _wait_step(api, run_id, "b")
    t0 = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    took = time.monotonic() - t0
    run = api.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "succeeded" and cluster.owner_pid(run) == worker.pid  # finished before it exited
    assert 0.5 < took < 20, took  # it waited for the run, within the grace
    assert [line.split()[1] for line in log.read_text().splitlines()] == ["a", "c"]
    assert api.get("/api/v1/workers").json()["workers"] == []  # its heartbeat row is gone


def test_sigterm_worker_hands_back_a_run_that_outlasts_the_grace(cluster):
    log = cluster.root / "count.log"
    write(cluster.wf, "three.yaml", THREE.format(log=log, seconds=3.0))
    workers = [cluster.start_worker(PIXELMILL_SHUTDOWN_GRACE="0.5") for _ in range(2)]
    api = cluster.start_api()
    run_id = api.post("/webhook/three", json={}).json()["run_id"]
    _wait_step(api, run_id, "b")
    pid = cluster.owner_pid({"id": run_id})
    first = next(i for i, w in enumerate(workers) if w.pid == pid)
    t0 = time.monotonic()
    workers[first].send_signal(signal.SIGTERM)
    assert workers[first].wait(15) == 0
    assert time.monotonic() - t0 < 5  # the grace (0.5 s) bounds the shutdown, not the 3 s step
    assert "handed back to the queue" in cluster.worker_log(first)
    run = api.wait_run(run_id, timeout=60)
    assert run["status"] == "succeeded" and cluster.owner_pid(run) == workers[1 - first].pid  # resumed there
    assert [line.split()[1] for line in log.read_text().splitlines()] == ["a", "c"]  # a was not run again
    events = [json.loads(block.split("data: ", 1)[1]) for block in api.get(f"/api/v1/runs/{run_id}/events")
              .text.split("\n\n") if "data: " in block]
    assert [e["step_id"] for e in events if e["kind"] == "step.started"] == ["a", "b", "b", "c"]
    assert sum(e["kind"] == "run.finished" for e in events) == 1


def test_max_queue_bounds_queued_runs_in_celery_mode(cluster):
    from concurrent.futures import ThreadPoolExecutor

    write(cluster.wf, "idle.yaml", QUEUED.format(name="idle", queue="idle"))  # no worker: runs wait
    with ThreadPoolExecutor(2) as pool:
        api, other = pool.map(lambda _: cluster.start_api(PIXELMILL_MAX_QUEUE="3"), range(2))
    replies = [api.post("/webhook/idle", json={}) for _ in range(5)]
    assert [r.status_code for r in replies] == [202, 202, 202, 503, 503]
    assert replies[3].headers["Retry-After"] == "5" and "PIXELMILL_MAX_QUEUE=3" in replies[3].text
    assert api.post("/api/v1/workflows/idle/runs", json={}).status_code == 503
    time.sleep(0.4)  # past the cached count: the store's count still says 3
    assert api.post("/webhook/idle", json={}).status_code == 503
    assert other.post("/webhook/idle", json={}).status_code == 503  # the bound covers every API process
    assert api.post(f"/api/v1/runs/{replies[0].json()['run_id']}/cancel").json()["status"] == "cancelled"
    time.sleep(0.4)
    assert other.post("/webhook/idle", json={}).status_code == 202  # room again
    assert api.post("/webhook/idle", json={}).status_code == 503
