"""`make run`'s module: serves workflows/, calls the demo workflow's webhook once, prints the result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_triggers_the_webhook_and_keeps_serving(tmp_path):
    env = {**os.environ, "PIXELMILL_HOME": str(tmp_path / "home"), "PIXELMILL_PORT": "0",
           "PIXELMILL_DEMO_INPUTS": '{"style": "pencil sketch"}', "PYTHONUNBUFFERED": "1",
           "PIXELMILL_DEMO_WORKFLOW": "hello-prompt"}  # a workflow that takes 'style'
    env.pop("PIXELMILL_API_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "pixelmill.demo"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    done = threading.Event()

    def pump():
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("API:"):
                done.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert done.wait(30), "".join(lines)
        text = "".join(lines)
        assert "succeeded" in text and "pencil sketch" in text.split("demo: POST", 1)[1].split("\n", 1)[1]
        assert "/api/v1/runs/" in text and "curl -sS -X POST http://127.0.0.1:" in text
        # the dashboard's URL comes first, right after the server's own line, before the demo call
        first = next(i for i, ln in enumerate(lines) if ln.startswith(("dashboard:", "demo:")))
        assert lines[first].startswith("dashboard: http://127.0.0.1:"), lines[first]
        assert "  page:   http://127.0.0.1:" in text
        time.sleep(0.3)
        assert proc.poll() is None  # still serving
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
    assert "stopped" in "".join(lines)
