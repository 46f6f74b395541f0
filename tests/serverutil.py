"""Start the real server in a subprocess on a free loopback port and talk HTTP to it."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

HERE = Path(__file__).parent
ENTRY = HERE / "serve_test_app.py"


class Server:
    def __init__(self, home: Path, workflows: Path, env: dict | None = None, token: str | None = None):
        self.home = Path(home)
        self.workflows = Path(workflows)
        self.env = dict(env or {})
        self.token = token
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.log: list[str] = []
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def start(self, timeout: float = 30.0) -> Server:
        env = {**os.environ, "PIXELMILL_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        env.pop("PIXELMILL_DB_URL", None)  # SQLite in home unless the test names a database
        env.update(self.env)
        if self.token:
            env["PIXELMILL_API_TOKEN"] = self.token
        self.proc = subprocess.Popen([sys.executable, str(ENTRY), str(self.workflows)], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        found = threading.Event()

        def pump():
            for line in self.proc.stdout:
                self.log.append(line)
                m = re.search(r"on (http://127\.0\.0\.1:\d+) ", line)
                if m and not found.is_set():
                    self.url = m.group(1)
                    found.set()

        threading.Thread(target=pump, daemon=True).start()
        if not found.wait(timeout):
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.log[-50:]))
        return self

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    # -- HTTP helpers ---------------------------------------------------------------------------

    def get(self, path, **kw):
        return self.http.get(self.url + path, timeout=kw.pop("timeout", 30), **kw)

    def post(self, path, **kw):
        return self.http.post(self.url + path, timeout=kw.pop("timeout", 30), **kw)

    def delete(self, path, **kw):
        return self.http.delete(self.url + path, timeout=kw.pop("timeout", 30), **kw)

    def wait_run(self, run_id: str, timeout: float = 30.0, done=("succeeded", "failed", "blocked", "cancelled",
                                                                  "interrupted")) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.get(f"/api/v1/runs/{run_id}")
            if r.status_code == 200 and r.json()["status"] in done:
                return r.json()
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} did not finish in {timeout} s: {r.text}")

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.home / "pixelmill.db", timeout=30)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def serving(root: Path, files: dict[str, str], env: dict | None = None, token: str | None = None) -> Iterator[Server]:
    """A module fixture's body (``yield from serving(...)``): the workflow ``files`` (name -> YAML) written to
    ``root/workflows``, the server started on them, stopped afterwards. ``server.data`` is the empty folder
    ``root/data`` for the test nodes' files (the YAML may name it)."""
    data = root / "data"
    data.mkdir(exist_ok=True)
    for name, text in files.items():
        write(root / "workflows", name, text)
    server = Server(root / "home", root / "workflows", env, token=token).start()
    server.data = data
    try:
        yield server
    finally:
        server.stop()


def hook(srv: Server, path: str, method: str = "POST", **kw) -> requests.Response:
    """Call the webhook ``path`` of ``srv`` (without the API token: webhooks have their own auth)."""
    return requests.request(method, srv.url + "/webhook/" + path, timeout=30, **kw)


class Receiver:
    """A local HTTP endpoint (a callback's resume URL, a subscriber) that answers its first ``fail_first``
    POSTs with ``fail_code`` and the rest with 200, recording each: ``raw``, ``body`` (JSON), ``headers``,
    ``code`` and ``at`` (monotonic time)."""

    def __init__(self, fail_first: int = 0, path: str = "/hook", fail_code: int = 503):
        self.posts: list[dict] = []
        self.fail_first = fail_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                code = fail_code if len(outer.posts) < outer.fail_first else 200
                outer.posts.append({"raw": raw, "body": json.loads(raw), "headers": dict(self.headers),
                                    "code": code, "at": time.monotonic()})
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def codes(self) -> list[int]:
        return [p["code"] for p in self.posts]

    def wait(self, n: int, timeout: float = 15.0, ok: bool = False) -> None:
        """Until ``n`` POSTs arrived (``ok``: ``n`` answered 200)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [p for p in self.posts if p["code"] == 200] if ok else self.posts
            if len(got) >= n:
                return
            time.sleep(0.05)
        raise AssertionError(f"expected {n} POST(s), got {self.codes}")

    def close(self):
        self.server.shutdown()
        self.server.server_close()
