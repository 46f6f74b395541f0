"""Celery mode on loopback: throughput with 1, 2 and 4 workers on a node that stands in for a GPU job (a fixed
sleep) as a fraction of linear scaling; enqueue-to-start latency p50/p99; webhook acceptance rate in celery
mode against local mode; how late progress events written by a worker reach an SSE client of the API.
Starts its own redis-server and PostgreSQL (as the tests do) and prints figures measured in this one run.

    python bench/cluster.py [--job 0.5] [--runs-per-worker 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from scripts.cluster import backing_services, stop_processes  # noqa: E402
from tests.serverutil import Server, write  # noqa: E402

WF = """
name: job
queue: default
on: {{webhook: {{path: job, respond: immediately}}}}
steps:
  - {{id: gpu, node: test_sleep, with: {{seconds: {seconds}, steps: 1}}}}
"""


PROGRESS = """
name: progress
queue: default
on: {webhook: {path: progress, respond: immediately}}
steps:
  - {id: gpu, node: test_sleep, with: {seconds: 1.0, steps: 20}}
"""


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


class Bench:
    def __init__(self, root: Path, db_url: str, broker: str, job: float):
        self.root, self.db_url, self.broker, self.job = root, db_url, broker, job
        self.wf = root / "wf"
        write(self.wf, "job.yaml", WF.format(seconds=job))
        write(self.wf, "progress.yaml", PROGRESS)
        self.env = {"PIXELMILL_DB_URL": db_url, "PIXELMILL_BROKER_URL": broker, "PIXELMILL_HOME": str(root / "home"),
                    "PIXELMILL_HEARTBEAT_INTERVAL": "0.5", "PYTHONUNBUFFERED": "1"}
        self.engine = create_engine(db_url)
        self.workers: list[subprocess.Popen] = []

    def api(self, executor: str) -> Server:
        env = {**self.env, "PIXELMILL_EXECUTOR": executor, "PIXELMILL_SCHEDULER": "0", "PIXELMILL_WORKERS": "4",
               "PIXELMILL_RETENTION_DAYS": "0"}
        return Server(self.root / "home", self.wf, env).start()

    def set_workers(self, n: int) -> None:
        while len(self.workers) < n:
            log = open(self.root / f"worker-{len(self.workers)}.log", "w")
            self.workers.append(subprocess.Popen(
                [sys.executable, str(ROOT / "tests" / "worker_test_app.py"), str(self.wf), "default"],
                env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 120
        while self.sql("SELECT count(*) FROM workers") < n:
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start")
            time.sleep(0.2)
        time.sleep(1.0)  # the Celery consumers are listening

    def stop_workers(self) -> None:
        stop_processes(self.workers)
        self.workers = []

    def sql(self, q: str, **params):
        with self.engine.connect() as conn:
            return conn.execute(text(q), params).scalar()

    def burst(self, srv: Server, n: int, threads: int = 8) -> tuple[list[str], float]:
        ids: list[str] = []
        lock = threading.Lock()
        per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]

        def post(k):
            import requests

            s = requests.Session()
            for _ in range(k):
                r = s.post(srv.url + "/webhook/job", json={}, timeout=30)
                assert r.status_code == 202, r.text
                with lock:
                    ids.append(r.json()["run_id"])

        t0 = time.perf_counter()
        ts = [threading.Thread(target=post, args=(k,)) for k in per]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return ids, time.perf_counter() - t0

    def wait_done(self, ids: list[str], timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while self.sql("SELECT count(*) FROM runs WHERE id = ANY(:ids) AND status = 'succeeded'", ids=ids) < len(ids):
            if time.monotonic() > deadline:
                raise RuntimeError("runs did not finish")
            time.sleep(0.05)

    def span(self, ids: list[str]) -> float:
        return self.sql("SELECT EXTRACT(EPOCH FROM max(finished_at) - min(created_at)) FROM runs WHERE id = ANY(:ids)",
                        ids=ids)

    def event_latencies(self, srv: Server, runs: int) -> list[float]:
        """Seconds from a worker creating a progress event (its ``ts``) to an SSE client of the API reading it
        (both on this machine's clock), for events that arrive live."""
        import json

        import requests

        out: list[float] = []
        for _ in range(runs):
            rid = srv.post("/webhook/progress", json={}).json()["run_id"]
            connected = time.time()
            with requests.get(f"{srv.url}/api/v1/runs/{rid}/events", stream=True, timeout=60) as resp:
                for raw in resp.iter_lines(decode_unicode=True):
                    if raw.startswith("data: "):
                        ev = json.loads(raw[6:])
                        if ev.get("kind") == "step.progress" and ev["ts"] >= connected:
                            out.append(time.time() - ev["ts"])
                    elif raw.startswith("event: run.finished"):
                        break
        return out

    def start_latencies(self, ids: list[str]) -> list[float]:
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT EXTRACT(EPOCH FROM started_at - created_at) FROM runs WHERE id = ANY(:ids)"),
                                {"ids": ids}).all()
        return [float(r[0]) for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--job", type=float, default=0.5, help="seconds the stand-in GPU node sleeps")
    ap.add_argument("--runs-per-worker", type=int, default=8)
    ap.add_argument("--latency-runs", type=int, default=40)
    ap.add_argument("--webhook-calls", type=int, default=300)
    ap.add_argument("--event-runs", type=int, default=5)
    args = ap.parse_args()
    with backing_services("cannot run") as (pg, url):
        measure(args, pg.create_database(), url)


def measure(args, db_url: str, broker: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="pixelmill-cluster-bench-"))
    bench = Bench(root, db_url, broker, args.job)
    srv = None
    try:
        srv = bench.api("celery")
        print(f"stand-in GPU job: {args.job} s sleep; API in celery mode; Redis and PostgreSQL on loopback")
        print(f"CPU cores here: {os.cpu_count()}")
        rates = {}
        for n in (1, 2, 4):
            bench.set_workers(n)
            ids, _ = bench.burst(srv, n * args.runs_per_worker)
            bench.wait_done(ids)
            rates[n] = len(ids) / bench.span(ids)
            frac = rates[n] / (n * rates[1])
            print(f"workers={n}: {len(ids)} runs, {rates[n]:.2f} runs/s "
                  f"(ideal {n / args.job:.2f}); fraction of linear vs 1 worker: {frac:.2f}")
        # enqueue-to-start: one run at a time onto idle workers
        ids = []
        for _ in range(args.latency_runs):
            rid = srv.post("/webhook/job", json={}).json()["run_id"]
            bench.wait_done([rid])
            ids.append(rid)
        lat = [x * 1000 for x in bench.start_latencies(ids)]
        print(f"enqueue-to-start (created_at -> claimed by a worker, {len(lat)} runs on idle workers): "
              f"p50 {statistics.median(lat):.1f} ms, p99 {pct(lat, 99):.1f} ms")
        ev = [x * 1000 for x in bench.event_latencies(srv, args.event_runs)]
        print(f"progress events, worker -> API -> SSE client ({len(ev)} events of {args.event_runs} runs, event "
              f"time to read by the client): p50 {statistics.median(ev):.1f} ms, p99 {pct(ev, 99):.1f} ms")
        _, t_celery = bench.burst(srv, args.webhook_calls)
        srv.stop()
        bench.stop_workers()
        srv = bench.api("local")
        _, t_local = bench.burst(srv, args.webhook_calls)
        print(f"webhook acceptance ({args.webhook_calls} calls, 8 client threads, respond: immediately): "
              f"celery mode {args.webhook_calls / t_celery:.0f}/s, local mode {args.webhook_calls / t_local:.0f}/s "
              f"({t_local / t_celery:.2f}x)")
    finally:
        if srv is not None:
            srv.stop()
        bench.stop_workers()
        bench.engine.dispose()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
