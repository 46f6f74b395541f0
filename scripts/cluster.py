"""``make cluster``: a local cluster on loopback — redis-server, a throwaway PostgreSQL, one API process in celery
mode and two workers — runs the main job (``daily-shapes``) through it, prints where to look, and keeps
everything running until Ctrl-C (``--once``: stop after the job). Needs Debian's redis-server and postgresql
(``make cluster`` installs them when it may). ``bench/cluster.py`` starts its backing services and stops its
processes with ``backing_services`` and ``stop_processes`` from here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pg import PgCluster, free_port  # noqa: E402
from tests.redisutil import start_redis  # noqa: E402


@contextmanager
def backing_services(who: str) -> Iterator[tuple[PgCluster, str]]:
    """redis-server and a throwaway PostgreSQL on free loopback ports, stopped on exit: yields the cluster and
    the broker URL; exits the program with ``who: <what is missing>`` when either cannot start."""
    pg, why = PgCluster.start()
    if pg is None:
        sys.exit(f"{who}: {why}")
    redis, broker = start_redis()
    if redis is None:
        pg.stop()
        sys.exit(f"{who}: {broker}")
    try:
        yield pg, broker
    finally:
        redis.terminate()
        redis.wait(10)
        pg.stop()


def stop_processes(procs: list[subprocess.Popen], grace: float = 20.0) -> None:
    """SIGTERM to every process, then up to ``grace`` seconds each to exit before it is killed."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--once", action="store_true", help="stop everything after the job")
    ap.add_argument("--workflow", default="daily-shapes")
    args = ap.parse_args()
    with backing_services("cluster") as (pg, broker):
        run(args, pg, broker)


def run(args, pg: PgCluster, broker: str) -> None:
    home = Path(tempfile.mkdtemp(prefix="pixelmill-cluster-"))
    port = free_port()
    env = {**os.environ, "PIXELMILL_DB_URL": pg.create_database(), "PIXELMILL_BROKER_URL": broker,
           "PIXELMILL_HOME": str(home), "PIXELMILL_EXECUTOR": "celery", "PYTHONUNBUFFERED": "1"}
    exe = [sys.executable, "-m", "pixelmill.cli"]
    procs: list[subprocess.Popen] = []
    try:
        api_log = open(home / "api.log", "w")
        procs.append(subprocess.Popen([*exe, "serve", "--workflows", str(ROOT / "workflows"), "--port", str(port)],
                                      env=env, stdout=api_log, stderr=subprocess.STDOUT))
        for i in range(2):
            log = open(home / f"worker-{i}.log", "w")
            procs.append(subprocess.Popen([*exe, "worker", "--workflows", str(ROOT / "workflows"),
                                           "--queues", "default,gpu", "--device", "cpu", "--name", f"w{i}@%h"],
                                          env=env, stdout=log, stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                workers = requests.get(base + "/api/v1/workers", timeout=2).json()["workers"]
                if len(workers) == 2:
                    break
            except (requests.RequestException, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                sys.exit(f"cluster: did not start; see {home}/*.log")
            time.sleep(0.5)
        print(f"cluster: API {base} (dashboard {base}/), 2 workers, Redis {broker}, PostgreSQL on port {pg.port}")
        print(f"cluster: POST {base}/webhook/{args.workflow} {{}}", flush=True)
        r = requests.post(f"{base}/webhook/{args.workflow}", json={}, timeout=300)
        body = r.json()
        print(f"cluster: {r.status_code} {json.dumps(body, indent=2)[:3000]}")
        run = requests.get(f"{base}/api/v1/runs/{body.get('run_id')}", timeout=10).json()
        print(f"cluster: run {run.get('id')} {run.get('status')}; steps: "
              + ", ".join(f"{s['step_id']}={s['status']}" for s in run.get("steps", [])))
        print("cluster: where to look:")
        print(f"  {base}/api/v1/workers        workers, queues, device, models, current run")
        print(f"  {base}/api/v1/runs/{run.get('id')}/events   the run's events (SSE)")
        print(f"  {home}/runs/                 artifacts (the shared folder)")
        print(f"  {home}/api.log, worker-0.log, worker-1.log")
        if not args.once:
            print("cluster: running; Ctrl-C stops everything", flush=True)
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        stop_processes(procs)
        if args.once:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
