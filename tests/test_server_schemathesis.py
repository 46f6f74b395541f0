"""schemathesis (every check, positive and negative data) against the served OpenAPI document, once with an
API token and once without: 0 failures either way, and no traceback in the server log."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .serverutil import Server

ROOT = Path(__file__).resolve().parents[1]
ST = Path(sys.executable).with_name("schemathesis")


def run_schemathesis(url: str, cwd: Path, token: str | None, examples: int = 10) -> subprocess.CompletedProcess:
    cmd = [str(ST), "run", url + "/api/v1/openapi.json", "--checks", "all", "--max-examples", str(examples),
           "--seed", "7", "--generation-database", "none", "--no-color", "--request-timeout", "20",
           "--workers", "2", "--phases", "examples,coverage,fuzzing,stateful", "--suppress-health-check", "all"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=420, cwd=cwd)


@pytest.mark.skipif(not ST.exists(), reason="schemathesis is not installed (pip install -e '.[dev]')")
@pytest.mark.parametrize("token", ["fuzz-token", None], ids=["with-token", "without-token"])
def test_all_checks_pass_on_generated_requests(tmp_path, token):
    wf = tmp_path / "wf"
    shutil.copytree(ROOT / "workflows", wf)
    env = {"PIXELMILL_SCHEDULER": "0", "PIXELMILL_WATCH_INTERVAL": "0"}
    srv = Server(tmp_path / "home", wf, env, token=token).start()
    try:
        proc = run_schemathesis(srv.url, tmp_path, token)
    finally:
        srv.stop()
    tail = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail + "\nserver log:\n" + "".join(srv.log[-80:])
    assert "Traceback" not in "".join(srv.log)
