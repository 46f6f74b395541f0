"""schemathesis (every check, positive and negative data) against the served OpenAPI document, once with an
API token and once without: 0 failures either way, and no traceback in the server log."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .serverutil import Server, write

ROOT = Path(__file__).resolve().parents[1]
ST = Path(sys.executable).with_name("schemathesis")
# examples whose runs are cheap (generated requests start many of them); weekly-calendar with its rows
# (calendar.yaml) gives the calendar API entries to list, move, approve, skip and regenerate
LIGHT = ["hello-prompt.yaml", "moderated-prompt.yaml", "post-outbox.yaml", "weekly-calendar.yaml", "calendar.yaml"]
TYPED = """
name: typed
inputs:
  subject: {type: string}
  mood: {type: string, enum: [calm, loud], default: calm}
  count: {type: integer, default: 1}
  scale: {type: number, default: 1.5}
  draft: {type: boolean, default: false}
  tags: {type: list, default: []}
  meta: {type: object, default: {}}
on: {webhook: {path: typed}}
steps: [{id: p, node: prompt, with: {template: "{{ s }}", vars: {s: "${{ inputs.subject }}"}}}]
"""
GUARDED = """
name: guarded
on: {webhook: {path: guarded, auth: {type: header, secret: FUZZ_HOOK_TOKEN}}}
steps: [{id: p, node: prompt, with: {template: guarded}}]
"""


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
    wf.mkdir()
    for name in LIGHT:
        shutil.copy(ROOT / "workflows" / name, wf / name)
    write(wf, "typed.yaml", TYPED)
    write(wf, "guarded.yaml", GUARDED)
    # generated callback_urls name made-up hosts: callbacks may only go to loopback here, nothing leaves the machine
    env = {"PIXELMILL_SCHEDULER": "0", "PIXELMILL_WATCH_INTERVAL": "0", "FUZZ_HOOK_TOKEN": "hook",
           "PIXELMILL_CALLBACK_HOSTS": "127.0.0.1,localhost"}
    srv = Server(tmp_path / "home", wf, env, token=token).start()
    try:
        proc = run_schemathesis(srv.url, tmp_path, token)
    finally:
        srv.stop()
    tail = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail + "\nserver log:\n" + "".join(srv.log[-80:])
    log = "".join(srv.log)
    assert "Traceback" not in log
    assert "NameResolutionError" not in log  # no callback went looking for a made-up host
