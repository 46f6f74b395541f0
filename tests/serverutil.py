"""Start the real server in a subprocess on a free loopback port and talk HTTP to it."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
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
