"""A newcomer's first hour and the noise around it (issue 9, items 30 and 31): reaching `pixelmill`, one run
store for `make run` and the CLI, a busy port, the demo's name in the docs, a clean package build, and no
library warnings in a CLI run."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pixelmill.demo import DEFAULT_WORKFLOW

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ, PIXELMILL_HOME=str(tmp_path / "home"))
    e.pop("PYTHONPATH", None)
    return e


def test_readme_and_setup_say_how_to_reach_the_pixelmill_command():
    readme = (ROOT / "README.md").read_text()
    first_hour = readme[: readme.index("## A workflow")]
    assert ".venv/bin/pixelmill" in first_hour and "source .venv/bin/activate" in first_hour
    makefile = (ROOT / "Makefile").read_text()
    setup_recipe = makefile[makefile.index("$(STAMP): pyproject.toml"): makefile.index("\nrun:")]
    assert "$(BIN)/pixelmill --help" in setup_recipe and "source $(BIN)/activate" in setup_recipe
    script = Path(sys.executable).parent / "pixelmill"  # where `make setup` puts it
    if script.exists():
        out = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and out.stdout.startswith("pixelmill, version")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_uses_the_same_home_as_the_cli(tmp_path):
    """`make run` must not point PIXELMILL_HOME somewhere the CLI never looks (it used ./.pixelmill)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PIXELMILL_HOME", "MAKEFLAGS", "MFLAGS")}
    # -p prints make's variable database, -n runs nothing
    out = subprocess.run(["make", "-pn", "run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "PIXELMILL_HOME" not in out.stdout
    docs = (ROOT / "README.md").read_text()
    assert "`make run` uses `./.pixelmill`" not in docs and "so `pixelmill runs` lists what `make run` did" in docs


def test_docs_name_the_demo_workflow_make_run_calls():
    server_md = (ROOT / "docs" / "server.md").read_text()
    assert f"(default `{DEFAULT_WORKFLOW}`" in server_md
    assert (ROOT / "workflows" / f"{DEFAULT_WORKFLOW}.yaml").exists()


def test_serve_on_a_busy_port_says_to_use_port(env, tmp_path):
    (tmp_path / "wf").mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "pixelmill.cli", "serve", "--port", str(port), "--workflows",
                               str(tmp_path / "wf")], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert f"choose another port with --port (e.g. --port {port + 1})" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_run_that_looks_up_a_hub_model_prints_no_library_warning(env, tmp_path):
    wf = tmp_path / "hub.yaml"
    wf.write_text("name: hub\nsteps:\n  - id: gen\n    node: generate_image\n"
                  "    config: {model: example-org/not-on-this-machine}\n    with: {prompt: a red circle, seed: 1}\n")
    env = {k: v for k, v in env.items() if k not in ("PIXELMILL_ALLOW_DOWNLOADS", "PYTHONWARNINGS")}
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.run([sys.executable, "-m", "pixelmill.cli", "run", str(wf)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1  # the model is not here: a clear failure, not a download
    assert "text-to-image model 'example-org/not-on-this-machine' is not on this machine" in proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr


def test_package_builds_without_setuptools_warnings_and_ships_the_policy(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("pixelmill", "nodes"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    log = proc.stdout + proc.stderr
    assert "BuildBackendWarning" not in log and "absent from the `packages` configuration" not in log, log
    wheel = next((tmp_path / "dist").glob("pixelmill-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "pixelmill_nodes/policies/default.yaml" in names and "pixelmill_nodes/prompt.py" in names
    assert not any(n.startswith("nodes/") for n in names)  # no bare `nodes` package lands in site-packages
