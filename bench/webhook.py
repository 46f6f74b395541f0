"""Webhook load on loopback: a trivial workflow (one prompt step, no models) behind /webhook/<path>,
``respond: immediately`` (the run row is written before the 202). For each concurrency level: requests/s,
p50 and p99 latency, then a check that every accepted run is in the store, and how fast the worker pool
finished them.

    python bench/webhook.py                       # 20 s each at concurrency 1, 8, 32
    python bench/webhook.py --duration 5 --concurrency 32 --workers 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

WORKFLOW = """
name: bench
on: {webhook: {path: bench, respond: immediately, extra_inputs: ignore}}
steps:
  - id: prompt
    node: prompt
    with: {template: "a {{ color }} circle", choices: {color: [red, green, blue]}, seed: 1}
outputs: {prompt: "${{ steps.prompt.outputs.text }}"}
"""


def start_server(home: Path, wf: Path, workers: int, threads: int, max_queue: int):
    env = {**os.environ, "PIXELMILL_HOME": str(home), "PIXELMILL_WORKERS": str(workers),
           "PIXELMILL_MAX_QUEUE": str(max_queue),
           "PIXELMILL_HTTP_THREADS": str(threads), "PIXELMILL_SCHEDULER": "0", "PYTHONUNBUFFERED": "1"}
    env.pop("PIXELMILL_DB_URL", None)
    env.pop("PIXELMILL_API_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-c", "from pixelmill.cli import main; main()", "serve",
                             "--workflows", str(wf), "--port", "0"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    url = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        log.append(line)
        m = re.search(r"on (http://127\.0\.0\.1:(\d+)) ", line)
        if m:
            url = m.group(1)
            break
    if not url:
        proc.kill()
        raise SystemExit("server did not start:\n" + "".join(log))
    threading.Thread(target=lambda: [log.append(x) for x in proc.stdout], daemon=True).start()
    return proc, url, log


async def _client(host: str, port: int, path: str, body: bytes, stop_at: float, lat: list[float], codes: dict):
    reader, writer = await asyncio.open_connection(host, port)
    req = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    try:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            m = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if m:
                await reader.readexactly(int(m.group(1)))
            lat.append(time.perf_counter() - t0)
            codes[status] = codes.get(status, 0) + 1
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


async def _load(url: str, concurrency: int, duration: float):
    host, port = url.split("//")[1].split(":")
    lat: list[float] = []
    codes: dict[int, int] = {}
    t0 = time.perf_counter()
    stop_at = t0 + duration
    await asyncio.gather(*[_client(host, int(port), "/webhook/bench", json.dumps({"n": i}).encode(), stop_at, lat,
                                   codes) for i in range(concurrency)])
    return lat, codes, time.perf_counter() - t0


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db, timeout=30) as conn:
        return dict(conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per concurrency level")
    ap.add_argument("--concurrency", default="1,8,32", help="comma-separated levels")
    ap.add_argument("--workers", type=int, default=4, help="PIXELMILL_WORKERS for the server")
    ap.add_argument("--threads", type=int, default=32, help="PIXELMILL_HTTP_THREADS for the server")
    ap.add_argument("--max-queue", type=int, default=1_000_000,
                    help="PIXELMILL_MAX_QUEUE for the server (beyond it webhooks answer 503)")
    ap.add_argument("--drain-timeout", type=float, default=120.0, help="seconds to wait for queued runs to finish")
    args = ap.parse_args()
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    with tempfile.TemporaryDirectory(prefix="pixelmill-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "wf").mkdir()
        (tmp / "wf" / "bench.yaml").write_text(WORKFLOW)
        proc, url, log = start_server(tmp / "home", tmp / "wf", args.workers, args.threads,
                                       args.max_queue)
        db = tmp / "home" / "pixelmill.db"
        print(f"server {url}: {args.workers} workers, {args.threads} HTTP threads, SQLite at {db}")
        print(f"{'conc':>5} {'requests':>9} {'202/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-202':>8} "
              f"{'persisted':>9} {'drain s':>8} {'done/s':>8}")
        try:
            asyncio.run(_load(url, 4, 1.0))  # warm-up, not reported
            _drain(db, args.drain_timeout)
            for c in levels:
                before = sum(counts(db).values())
                lat, codes, took = asyncio.run(_load(url, c, args.duration))
                accepted = codes.get(202, 0)
                persisted = sum(counts(db).values()) - before
                t_end = time.perf_counter()
                drained = _drain(db, args.drain_timeout)
                drain_s = time.perf_counter() - t_end
                total_s = took + drain_s
                ok = persisted == accepted
                print(f"{c:>5} {len(lat):>9} {accepted / took:>8.0f} {pct(lat, 50) * 1000:>8.1f} "
                      f"{pct(lat, 99) * 1000:>8.1f} {len(lat) - accepted:>8} "
                      f"{persisted:>9}{'' if ok else '!'} {drain_s:>8.1f} {accepted / total_s:>8.0f}"
                      + ("" if drained else "  (queue not drained)"))
                if not ok or accepted != len(lat):
                    print(f"      {accepted} accepted, {persisted} rows written; responses by code {codes}")
            final = counts(db)
            print(f"store: {final}")
            print("202/s: webhook calls accepted (run row committed before the answer) per second of load; "
                  "latency over all answers;\ndone/s: accepted runs per second until the worker pool had "
                  "finished them all (load time + drain time)")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _drain(db: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = counts(db)
        if not c.get("queued") and not c.get("running"):
            return True
        time.sleep(0.1)
    return False


if __name__ == "__main__":
    main()
