"""``make run``: start the service with the bundled workflows, print the dashboard's URL, call the demo workflow
once through its webhook, print what came back (outputs, where files are, the run's URLs) and a ready ``curl`` line, then keep serving
until interrupted.

Environment: PIXELMILL_DEMO_WORKFLOW (default ``daily-shapes``; point it at any workflow with a webhook),
PIXELMILL_DEMO_INPUTS (JSON object of inputs, default ``{}``), PIXELMILL_WORKFLOWS (default ``workflows``),
PIXELMILL_HOST / PIXELMILL_PORT (default 127.0.0.1:8080; a busy port falls back to a free one), plus every
server variable (docs/server.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shlex
import sys
import threading
import time
from pathlib import Path

import requests

DEFAULT_WORKFLOW = "daily-shapes"


def _auth(hook, body: bytes) -> tuple[dict, list[str]]:
    """Headers for the request, and the curl arguments (secrets as $VARIABLES, never their values)."""
    auth = hook.auth
    if auth.type == "header":
        name = auth.header or "X-Webhook-Token"
        return {name: os.environ.get(auth.secret or "", "")}, ["-H", f"{name}: ${auth.secret}"]
    if auth.type == "hmac":
        name = auth.header or "X-Signature-256"
        key = os.environ.get(auth.secret or "", "").encode()
        sig = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        return {name: sig}, ["-H", f"{name}: {sig}"]
    if auth.type == "basic":
        user = os.environ.get(auth.username_secret or "", "")
        pw = os.environ.get(auth.password_secret or "", "")
        token = base64.b64encode(f"{user}:{pw}".encode()).decode()
        return {"Authorization": f"Basic {token}"}, ["-u", f"${auth.username_secret}:${auth.password_secret}"]
    return {}, []


def _show(value, indent="    ") -> str:
    if isinstance(value, dict) and value.get("kind") == "artifact":
        return f"{value.get('url', '')}  ({value.get('media_type', '')}, file {value.get('path', value['name'])})"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def trigger_once(base: str, svc, name: str, inputs: dict, out=sys.stdout) -> dict | None:
    loaded = svc.workflows.get(name)
    if loaded is None:
        served = ", ".join(w.name for w in svc.workflows.all()) or "none"
        print(f"demo: workflow '{name}' is not served (served: {served}); set PIXELMILL_DEMO_WORKFLOW", file=out)
        return None
    hook = loaded.workflow.on.webhook
    if hook is None:
        print(f"demo: workflow '{name}' has no webhook trigger (on.webhook) to call", file=out)
        return None
    url = f"{base}/webhook/{hook.path.strip('/')}"
    body = json.dumps(inputs).encode()
    headers, curl_auth = _auth(hook, body)
    headers["Content-Type"] = "application/json"
    print(f"demo: POST {url} {body.decode()}", file=out, flush=True)
    t0 = time.monotonic()
    resp = requests.post(url, data=body, headers=headers, timeout=hook.respond_timeout + 30)
    result = resp.json()
    if resp.status_code == 202:  # still running (respond: immediately, or it outlasted respond_timeout)
        run_url = result["status_url"]
        while True:
            run = requests.get(run_url, timeout=30, headers=_api_headers()).json()
            if run["status"] not in ("queued", "running"):
                result = {"run_id": run["id"], "status": run["status"], "outputs": run["outputs"] or {},
                          "error": run["error"], "run_url": run_url, "events_url": f"{run_url}/events"}
                break
            time.sleep(0.5)
    took = time.monotonic() - t0
    store_root = svc.runtime.store.artifacts_root
    print(f"demo: run {result['run_id']} {result['status']} in {took:.2f} s", file=out)
    for key, value in (result.get("outputs") or {}).items():
        if isinstance(value, dict) and value.get("kind") == "artifact":
            value = {**value, "path": str(store_root / value["run_id"] / value["name"])}
        print(f"  {key}: {_show(value)}", file=out)
    if result.get("error"):
        err = result["error"]
        print(f"  error: {err.get('message') if isinstance(err, dict) else result.get('message', err)}", file=out)
    print(f"  run:    {result['run_url']}", file=out)
    print(f"  events: {result['events_url']}", file=out)
    print(f"  stored: {svc.runtime.settings.home}  (.venv/bin/pixelmill show {result['run_id'][:12]}; "
          f"pixelmill runs lists them all)", file=out)
    example = inputs or {k: spec.default for k, spec in loaded.workflow.inputs.items() if not spec.required}
    example_body = json.dumps(example)
    if hook.auth.type == "hmac":  # the signature belongs to the body it signs
        example_body = body.decode()
    curl = ["curl", "-sS", "-X", "POST", url, "-H", "Content-Type: application/json", *curl_auth, "-d", example_body]
    print("try it:\n  " + " ".join(a if a.startswith("$") else shlex.quote(a) for a in curl), file=out)
    print(f"  page:   {base}/runs/{result['run_id']}", file=out)
    print(f"API:    {base}/api/v1/workflows   (OpenAPI: {base}/api/v1/openapi.json)   Ctrl-C stops", file=out,
          flush=True)
    return result


def _api_headers() -> dict:
    token = os.environ.get("PIXELMILL_API_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def main() -> None:
    import logging

    from .cli.common import registry
    from .server.app import create_app
    from .server.config import ServerConfig
    from .server.runner import serve

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    name = os.environ.get("PIXELMILL_DEMO_WORKFLOW") or DEFAULT_WORKFLOW
    try:
        inputs = json.loads(os.environ.get("PIXELMILL_DEMO_INPUTS") or "{}")
        if not isinstance(inputs, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        sys.exit(f"demo: PIXELMILL_DEMO_INPUTS must be a JSON object: {exc}")
    config = ServerConfig.from_env()
    if config.workflows_dir is None:
        config.workflows_dir = Path("workflows")
    host = os.environ.get("PIXELMILL_HOST", "127.0.0.1")
    port = int(os.environ.get("PIXELMILL_PORT", "8080"))
    app = create_app(config, registry=registry())
    svc = app.extensions["pixelmill"]

    def announce(base: str) -> None:
        print(f"dashboard: {base}/   (runs, workflows, editor; open it in a browser)", flush=True)

        def run():
            try:
                trigger_once(base, svc, name, inputs)
            except Exception as exc:  # the service keeps running; say what went wrong
                print(f"demo: calling the webhook failed: {exc}", flush=True)

        threading.Thread(target=run, name="pixelmill-demo", daemon=True).start()

    try:
        serve(app, host, port, announce=announce)
    except OSError as exc:
        print(f"demo: port {port} is not free ({exc.strerror}); using a free port", flush=True)
        serve(app, host, 0, announce=announce)


if __name__ == "__main__":
    main()
