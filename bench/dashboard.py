"""Dashboard server time with a big run store: 10,000 runs (6 steps and ~16 events each, every succeeded
run with an image output) in SQLite, then the runs page and the run page rendered through the Flask app
in-process (the time the server spends per request, without network or browser).

Targets (issue 11): runs page < 300 ms, run page < 100 ms.

    python bench/dashboard.py                    # 10,000 runs, 30 requests per page
    python bench/dashboard.py --runs 50000 --requests 50
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEPS = [("prompt", "prompt", 0.01), ("check_prompt", "moderate", 0.08), ("gen", "generate_image", 6.0),
         ("cap", "caption", 0.7), ("label", "label_ai", 0.5), ("post", "post_social", 0.06)]
STATUSES = ["succeeded"] * 8 + ["failed", "cancelled"]
TRIGGERS = ["webhook", "schedule", "api", "dashboard"]


def fill(store, n: int, seed: int = 7) -> list[str]:
    """Write ``n`` finished runs with their steps and events in a few big transactions."""
    from pixelmill.db import EventRow, RunRow, StepRow

    rng = random.Random(seed)
    start = datetime(2026, 1, 1)
    ids = []
    runs, steps, events = [], [], []
    for i in range(n):
        rid = f"{i:08x}{rng.getrandbits(96):024x}"
        ids.append(rid)
        created = start + timedelta(minutes=7 * i)
        status = rng.choice(STATUSES)
        failed_at = rng.randrange(len(STEPS)) if status == "failed" else None
        t = created
        for k, (sid, node, dur) in enumerate(STEPS):
            if failed_at is not None and k > failed_at:
                steps.append(dict(run_id=rid, step_id=sid, node_type=node, node_version="1", status="cancelled",
                                  attempts=0, started_at=None, finished_at=t, duration_s=None, inputs=None,
                                  outputs=None, error=None))
                continue
            d = dur * rng.uniform(0.8, 1.3)
            ok = failed_at != k
            steps.append(dict(run_id=rid, step_id=sid, node_type=node, node_version="1",
                              status="succeeded" if ok else "failed", attempts=1 if ok else 3,
                              started_at=t, finished_at=t + timedelta(seconds=d), duration_s=d,
                              inputs={"text": "a large red circle"},
                              outputs={"text": "a large red circle"} if ok else None,
                              error=None if ok else {"step_id": sid, "message": f"step '{sid}' failed: boom",
                                                     "type": "RuntimeError"}))
            ts = t.timestamp()
            events.append(dict(run_id=rid, kind="step.started", step_id=sid, data={"attempt": 1, "node": node}, ts=ts))
            if sid == "gen":
                for v in (5, 10, 15, 20):
                    events.append(dict(run_id=rid, kind="step.progress", step_id=sid,
                                       data={"value": v, "total": 20, "message": "denoising"}, ts=ts + v * 0.3))
            if not ok:
                for a in (2, 3):
                    events.append(dict(run_id=rid, kind="step.retrying", step_id=sid,
                                       data={"attempt": a, "delay_s": 2, "error": {"message": "boom"}}, ts=ts))
            events.append(dict(run_id=rid, kind="step.finished" if ok else "step.failed", step_id=sid,
                               data={"status": "succeeded" if ok else "failed", "duration_s": d}, ts=ts + d))
            t += timedelta(seconds=d)
        image = {"kind": "artifact", "run_id": rid, "name": "label-labelled.png", "media_type": "image/png"}
        runs.append(dict(
            id=rid, workflow=rng.choice(["daily-shapes", "hello-prompt", "post-outbox"]), workflow_file="",
            status=status, trigger_kind=rng.choice(TRIGGERS), trigger={}, inputs={"seed": i},
            outputs={"prompt": "a large red circle", "caption": "a red circle", "image": image}
            if status == "succeeded" else None,
            error={"step_id": STEPS[failed_at][0], "message": "boom", "type": "RuntimeError"} if failed_at is not None
            else None, created_at=created, started_at=created, finished_at=t, owner=None, retry_of=None,
            cancel_requested=False))
        events.append(dict(run_id=rid, kind="run.finished", step_id=None, data={"status": status}, ts=t.timestamp()))
    with store.engine.begin() as conn:
        conn.execute(RunRow.__table__.insert(), runs)
        conn.execute(StepRow.__table__.insert(), steps)
        conn.execute(EventRow.__table__.insert(), events)
    return ids


def timed(client, path: str, n: int) -> tuple[float, float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.get_data(as_text=True)[:300])
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.95))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=30)
    args = ap.parse_args()

    from pixelmill.runtime import Runtime
    from pixelmill.server.app import create_app
    from pixelmill.server.config import ServerConfig
    from pixelmill.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="pixelmill-bench-dashboard-"))
    os.environ.pop("PIXELMILL_API_TOKEN", None)
    runtime = Runtime.create(Settings.from_env(home=home, db_url=f"sqlite:///{home / 'pixelmill.db'}"))
    t0 = time.perf_counter()
    ids = fill(runtime.store, args.runs)
    print(f"store: {args.runs} runs, {args.runs * len(STEPS)} steps written in {time.perf_counter() - t0:.1f} s "
          f"({home / 'pixelmill.db'})")
    app = create_app(ServerConfig.from_env(workflows_dir=ROOT / "workflows", scheduler=False), runtime=runtime,
                     start=False)
    app.extensions["pixelmill"].workflows.load()
    client = app.test_client()
    rng = random.Random(1)
    client.get("/")  # first request: template compilation
    client.get(f"/runs/{ids[0]}")
    rows = [
        ("runs page /", "/", 300),
        ("runs page, self-update fragment", "/?fragment=rows", 300),
        ("runs page 100 (offset 4,950)", "/?page=100", 300),
        ("runs page, status=failed", "/?status=failed", 300),
        ("runs page, workflow+trigger filter", "/?workflow=daily-shapes&trigger=webhook", 300),
    ]
    print(f"{'page':<40} {'median ms':>10} {'p95 ms':>8}  target")
    worst = {}
    for label, path, target in rows:
        med, p95 = timed(client, path, args.requests)
        worst[label] = (med, target)
        print(f"{label:<40} {med:>10.1f} {p95:>8.1f}  < {target} ms {'ok' if med < target else 'MISSED'}")
    times = []
    for _ in range(args.requests):
        rid = rng.choice(ids)
        t = time.perf_counter()
        assert client.get(f"/runs/{rid}").status_code == 200
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    med, p95 = statistics.median(times), times[int(len(times) * 0.95)]
    print(f"{'run page /runs/<id> (random runs)':<40} {med:>10.1f} {p95:>8.1f}  < 100 ms {'ok' if med < 100 else 'MISSED'}")
    for label, path in (("workflows page", "/workflows"), ("gallery (no files on disk)", "/gallery"),
                        ("health", "/health")):
        med, p95 = timed(client, path, max(5, args.requests // 3))
        print(f"{label:<40} {med:>10.1f} {p95:>8.1f}")
    app.extensions["pixelmill"].queue.writer.stop()
    runtime.close()
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
