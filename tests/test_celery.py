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
        self.api: Server | None = None

    def start_api(self) -> Server:
        env = {**self.env, "PIXELMILL_EXECUTOR": "celery", "PIXELMILL_SCHEDULER": "0",
               "PIXELMILL_SWEEP_INTERVAL": "0.3", "PIXELMILL_WORKER_STALE_AFTER": "3"}
        self.api = Server(self.root / "home", self.wf, env).start()
        return self.api

    def start_worker(self, queues: str = "default,gpu") -> subprocess.Popen:
        log = open(self.root / f"worker-{len(self.workers)}.log", "w")
        proc = subprocess.Popen([sys.executable, str(HERE / "worker_test_app.py"), str(self.wf), queues],
                                env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT)
        self.workers.append(proc)
        return proc

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
        if self.api is not None:
            self.api.stop()

    def owner_pid(self, run: dict) -> int:
        """The pid of the process that executed the run (the store's owner: host:pid:start)."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.env["PIXELMILL_DB_URL"])
        try:
            with engine.connect() as conn:
                owner = conn.execute(text("SELECT owner FROM runs WHERE id = :i"), {"i": run["id"]}).scalar()
        finally:
            engine.dispose()
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
