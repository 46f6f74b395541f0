"""schemathesis against the served OpenAPI document: generated requests (valid and invalid) never get a 5xx."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .serverutil import Server

ROOT = Path(__file__).resolve().parents[1]
ST = Path(sys.executable).with_name("schemathesis")


@pytest.mark.skipif(not ST.exists(), reason="schemathesis is not installed (pip install -e '.[dev]')")
def test_no_server_errors_on_generated_requests(tmp_path):
    wf = tmp_path / "wf"
    shutil.copytree(ROOT / "workflows", wf)
    srv = Server(tmp_path / "home", wf, {"PIXELMILL_SCHEDULER": "0"}, token="fuzz-token").start()
    try:
        proc = subprocess.run(
            [str(ST), "run", srv.url + "/api/v1/openapi.json", "--checks", "not_a_server_error",
             "--max-examples", "25", "--seed", "7", "--generation-database", "none", "--no-color",
             "--request-timeout", "20", "-H", "Authorization: Bearer fuzz-token", "--workers", "2"],
            capture_output=True, text=True, timeout=240, cwd=tmp_path)
    finally:
        srv.stop()
    tail = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail + "\nserver log:\n" + "".join(srv.log[-80:])
    assert "Traceback" not in "".join(srv.log)
