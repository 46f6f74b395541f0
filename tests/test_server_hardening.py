"""Issue 9 (server): security defaults, 4xx for hostile bodies, the OpenAPI document as served, webhook
bodies with unknown keys, and the run log, against the real server in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from .serverutil import Server, write

ROOT = Path(__file__).resolve().parents[1]
HOOK_TOKEN = "hook-token-for-tests"


@pytest.fixture(scope="module")
def open_srv(tmp_path_factory):
    """A server without an API token (the default)."""
    root = tmp_path_factory.mktemp("hard")
    wf = root / "workflows"
    write(wf, "guarded.yaml", """
name: guarded
on: {webhook: {path: guarded, respond: immediately, auth: {type: header, header: X-Token, secret: HOOK_TOKEN}}}
steps: [{id: p, node: prompt, with: {template: guarded}}]
""")
    write(wf, "topic.yaml", """
name: topic
inputs: {topic: {type: string, default: cats}, count: {type: integer, default: 1}}
on: {webhook: {path: topic, respond: when_done}}
steps: [{id: p, node: prompt, with: {template: "{{ t }}", vars: {t: "${{ inputs.topic }}"}}}]
outputs: {text: "${{ steps.p.outputs.text }}"}
""")
    write(wf, "loose.yaml", """
name: loose
inputs: {topic: {type: string, default: cats}}
on: {webhook: {path: loose, respond: when_done, extra_inputs: ignore}}
steps: [{id: p, node: prompt, with: {template: "{{ t }}", vars: {t: "${{ inputs.topic }}"}}}]
outputs: {text: "${{ steps.p.outputs.text }}"}
""")
    server = Server(root / "home", wf, {"HOOK_TOKEN": HOOK_TOKEN, "PIXELMILL_SCHEDULER": "0",
                                        "PIXELMILL_WATCH_INTERVAL": "0"}).start()
    yield server
    server.stop()


def _runs(srv, workflow: str) -> int:
    return srv.get("/api/v1/runs", params={"workflow": workflow}).json()["total"]


# -- 15: security defaults ---------------------------------------------------------------------------


def test_api_cannot_bypass_webhook_auth_without_a_token(open_srv):
    before = _runs(open_srv, "guarded")
    r = open_srv.post("/api/v1/workflows/guarded/runs", json={})
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "webhook_auth_required" and "PIXELMILL_API_TOKEN" in r.json()["message"]
    assert _runs(open_srv, "guarded") == before  # no run was created
    r = requests.post(open_srv.url + "/webhook/guarded", json={}, headers={"X-Token": HOOK_TOKEN}, timeout=10)
    assert r.status_code == 202  # the webhook with its credential still works
    done = open_srv.wait_run(r.json()["run_id"])
    r = open_srv.post(f"/api/v1/runs/{done['id']}/retry")  # a retry is a new start too
    assert r.status_code == 403


def test_api_with_a_token_may_start_a_webhook_protected_workflow(tmp_path):
    wf = tmp_path / "wf"
    write(wf, "guarded.yaml", """
name: guarded
on: {webhook: {path: guarded, auth: {type: header, secret: HOOK_TOKEN}}}
steps: [{id: p, node: prompt, with: {template: guarded}}]
""")
    srv = Server(tmp_path / "home", wf, {"HOOK_TOKEN": HOOK_TOKEN, "PIXELMILL_SCHEDULER": "0"}, token="tok").start()
    try:
        r = srv.post("/api/v1/workflows/guarded/runs", json={})
        assert r.status_code == 202, r.text
    finally:
        srv.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_refuses_a_public_address_without_a_token(tmp_path):
    env = dict(os.environ, PIXELMILL_HOME=str(tmp_path / "home"))
    env.pop("PIXELMILL_API_TOKEN", None)
    cmd = [sys.executable, "-m", "pixelmill.cli", "serve", "--workflows", str(ROOT / "workflows"),
           "--host", "0.0.0.0", "--port", str(_free_port())]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "refusing to listen on 0.0.0.0 without PIXELMILL_API_TOKEN" in proc.stderr
    assert "Traceback" not in proc.stderr
    # with a token the check passes (not bound here: tests listen on loopback only)
    from pixelmill.server.auth import check_exposure

    check_exposure("0.0.0.0", "a-long-random-token")
    check_exposure("127.0.0.1", None)


def test_loopback_addresses():
    from pixelmill.server.auth import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("::")
    assert not is_loopback("example.org") and not is_loopback("192.168.1.10")


# -- 16: hostile bodies get 4xx, and the server logs no traceback ------------------------------------------


def test_hostile_bodies_are_client_errors_without_tracebacks(open_srv):
    deep = ("[" * 1000 + "]" * 1000).encode()
    deep_obj = ('{"a":' * 1000 + "1" + "}" * 1000).encode()
    heads = {"Content-Type": "application/json"}
    for body in (deep, deep_obj, b'{"inputs": {"count": 1e400}}', b'{"inputs": {"count": Infinity}}',
                 b'{"inputs": {"count": NaN}}', b'{"inputs": {"count": -Infinity}}'):
        for url in ("/api/v1/workflows/topic/runs", "/webhook/topic"):
            r = requests.post(open_srv.url + url, data=body, headers=heads, timeout=30)
            assert r.status_code == 400, (url, body[:40], r.text)
            assert r.json()["error"] == "invalid_json", r.text
    msg = requests.post(open_srv.url + "/webhook/topic", data=b'{"count": 1e400}', headers=heads, timeout=10).json()
    assert "too large" in msg["message"]
    r = open_srv.post("/api/v1/workflows/topic/runs", json={"inputs": {"count": 2**60}})
    assert r.status_code == 400 and "whole number" in r.json()["message"]
    run_id = open_srv.post("/api/v1/workflows/topic/runs", json={}).json()["run_id"]
    r = open_srv.get(f"/api/v1/runs/{run_id}/artifacts/" + "a" * 4100)
    assert r.status_code == 404 and r.json()["error"] == "not_found" and len(r.text) < 1000
    r = open_srv.post("/api/v1/workflows/validate", json={"yaml": "o: &o {s: *o}\nname: x\n"})
    assert r.status_code < 500, r.text
    assert r.status_code in (200, 422) and r.json().get("valid") is not True
    assert "Traceback" not in "".join(open_srv.log)


def test_validate_never_500s_on_a_loader_exception(open_srv, monkeypatch):
    """A loader defect (any exception) becomes a 422 naming the file, not a 500 with a logged traceback."""
    from pixelmill.server import api
    from pixelmill.server.app import create_app
    from pixelmill.server.config import ServerConfig

    def broken(*_a, **_k):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(api, "load_text", broken)
    app = create_app(ServerConfig(), start=False)
    r = app.test_client().post("/api/v1/workflows/validate", json={"yaml": "name: x", "file": "f.yaml"})
    assert r.status_code == 422 and r.json["details"][0]["file"] == "f.yaml"
    assert "RecursionError" in r.json["message"]


# -- 20: the OpenAPI document matches the server ---------------------------------------------------------


def test_openapi_matches_the_server(open_srv):
    doc = open_srv.get("/api/v1/openapi.json").json()
    assert "securitySchemes" not in doc["components"]  # no token: no Authorization to send
    assert not any("security" in op for ops in doc["paths"].values() for op in ops.values())
    art = doc["paths"]["/api/v1/runs/{run_id}/artifacts/{name}"]["get"]["responses"]["200"]["content"]
    assert "image/png" in art
    run_id = open_srv.post("/api/v1/workflows/topic/runs", json={}).json()["run_id"]
    open_srv.wait_run(run_id)
    r = open_srv.get(f"/api/v1/runs/{run_id}/events", headers={"Last-Event-ID": ""})
    assert r.status_code == 400 and r.json()["error"] == "invalid_last_event_id"
    assert open_srv.get(f"/api/v1/runs/{run_id}/events", headers={"Last-Event-ID": "0"}).status_code == 200
    r = open_srv.post("/api/v1/workflows/topic/runs", data=b"null", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "not null" in r.json()["message"]
    r = requests.options(open_srv.url + "/api/v1/workflows/validate", timeout=10)
    assert "GET" not in r.headers["Allow"] and "POST" in r.headers["Allow"]
    # each served workflow has its own trigger path with its exact inputs
    body = doc["paths"]["/api/v1/workflows/topic/runs"]["post"]["requestBody"]["content"]["application/json"]
    inputs = body["schema"]["properties"]["inputs"]
    assert inputs["additionalProperties"] is False and set(inputs["properties"]) == {"topic", "count"}
    assert inputs["properties"]["count"]["type"] == "integer"
    r = open_srv.post("/api/v1/workflows/topic/runs", json={"inputs": {"count": "1"}})
    assert r.status_code == 400  # documented as an integer, so a string is refused
    r = open_srv.post("/api/v1/workflows/topic/runs", json={"callback_url": ""})
    assert r.status_code == 400 and r.json()["error"] == "invalid_callback_url"


def test_openapi_declares_bearer_auth_when_a_token_is_set():
    from pixelmill.server.app import create_app
    from pixelmill.server.config import ServerConfig

    app = create_app(ServerConfig(api_token="t"), start=False)
    doc = app.test_client().get("/api/v1/openapi.json").json
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert doc["paths"]["/api/v1/runs"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in doc["paths"]["/healthz"]["get"]


# -- 21: webhook bodies with unknown keys ------------------------------------------------------------------


def test_webhook_rejects_unknown_body_keys_naming_the_inputs(open_srv):
    before = _runs(open_srv, "topic")
    r = requests.post(open_srv.url + "/webhook/topic", json={"topik": "dogs"}, timeout=30)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "invalid_inputs"
    assert "'topik'" in body["message"] and "did you mean 'topic'" in body["message"]
    assert "count, topic" in body["message"] and "extra_inputs: ignore" in body["message"]
    r = requests.post(open_srv.url + "/webhook/topic", json={"inputs": {"topic": "dogs"}, "extra": 1}, timeout=30)
    assert r.status_code == 400 and "'extra'" in r.json()["message"]
    assert _runs(open_srv, "topic") == before
    r = requests.post(open_srv.url + "/webhook/topic", json={"topic": "dogs"}, timeout=30)
    assert r.status_code == 200 and r.json()["outputs"] == {"text": "dogs"}


def test_webhook_extra_inputs_ignore_opts_out(open_srv):
    r = requests.post(open_srv.url + "/webhook/loose", json={"topic": "owls", "source": "n8n"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == {"text": "owls"}
    run = open_srv.get(f"/api/v1/runs/{r.json()['run_id']}").json()
    assert run["trigger"]["body"]["source"] == "n8n"  # kept in the trigger


# -- 23: one log line per run start and end ----------------------------------------------------------------


def test_each_run_start_and_end_is_logged(open_srv):
    r = requests.post(open_srv.url + "/webhook/topic", json={"topic": "x"}, timeout=30)
    run_id = r.json()["run_id"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [ln for ln in open_srv.log if run_id in ln and "pixelmill.runs" in ln]
        if any("finished:" in ln for ln in lines):
            break
        time.sleep(0.05)
    assert any("started: workflow=topic trigger=webhook" in ln for ln in lines), lines
    end = [ln for ln in lines if "finished:" in ln]
    assert len(end) == 1 and "workflow=topic trigger=webhook status=succeeded duration=" in end[0]


# -- 23: the folder is watched; new node packages are picked up on reload -------------------------------------


def _wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_watched_folder_reloads_changed_files_and_logs_failures(tmp_path):
    wf = tmp_path / "wf"
    write(wf, "a.yaml", "name: a\nsteps: [{id: p, node: prompt, with: {template: a}}]\n")
    env = {"PIXELMILL_SCHEDULER": "0", "PIXELMILL_WATCH_INTERVAL": "0.2", "PIXELMILL_WATCH_DEBOUNCE": "0.3"}
    srv = Server(tmp_path / "home", wf, env).start()
    try:
        assert [w["name"] for w in srv.get("/api/v1/workflows").json()["items"]] == ["a"]
        write(wf, "b.yaml", """
name: b
on: {webhook: {path: b, respond: when_done}}
steps: [{id: p, node: prompt, with: {template: bee}}]
outputs: {text: "${{ steps.p.outputs.text }}"}
""")
        write(wf, "broken.yaml", "name: broken\nsteps: [{id: p, node: no_such_node}]\n")
        r = _wait_for(lambda: (x := requests.post(srv.url + "/webhook/b", json={}, timeout=10)).status_code != 404
                      and x)
        assert r.status_code == 200 and r.json()["outputs"] == {"text": "bee"}
        log = "".join(srv.log)
        assert "workflow folder changed" in log and "added workflow 'b'" in log
        assert "broken.yaml" in log and "no_such_node" in log  # what failed, and why
        (wf / "b.yaml").unlink()
        _wait_for(lambda: requests.post(srv.url + "/webhook/b", json={}, timeout=10).status_code == 404)
        assert _wait_for(lambda: any("removed workflow 'b'" in ln for ln in srv.log))
    finally:
        srv.stop()


def test_reload_picks_up_a_node_package_installed_while_serving(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    wf = tmp_path / "wf"
    write(wf, "shout.yaml", """
name: shout
on: {webhook: {path: shout, respond: when_done}}
steps: [{id: s, node: shout, config: {marks: 2}, with: {text: hi}}]
outputs: {text: "${{ steps.s.outputs.text }}"}
""")
    env = {"PIXELMILL_SCHEDULER": "0", "PIXELMILL_WATCH_INTERVAL": "0", "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    srv = Server(tmp_path / "home", wf, env).start()
    try:
        problems = srv.get("/api/v1/workflows").json()["problems"]
        assert any("shout" in p["message"] for p in problems)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(site), str(ROOT / "tests" / "plugins" / "pixelmill-shout")],
                       check=True, capture_output=True, timeout=300)
        r = srv.post("/api/v1/reload").json()
        assert r["added"] == ["shout"] and "shout" in r["nodes_added"], r
        r = requests.post(srv.url + "/webhook/shout", json={}, timeout=30)
        assert r.status_code == 200 and r.json()["outputs"] == {"text": "HI!!"}
    finally:
        srv.stop()


# -- 22: serve applies retention periodically ----------------------------------------------------------------


def test_serve_applies_retention_periodically(tmp_path):
    wf = tmp_path / "wf"
    write(wf, "r.yaml", """
name: r
on: {webhook: {path: r, respond: when_done}}
steps: [{id: p, node: prompt, with: {template: r}}]
""")
    env = {"PIXELMILL_SCHEDULER": "0", "PIXELMILL_WATCH_INTERVAL": "0", "PIXELMILL_RETENTION_MAX_RUNS": "2",
           "PIXELMILL_RETENTION_INTERVAL": "1"}
    srv = Server(tmp_path / "home", wf, env).start()
    try:
        ids = [requests.post(srv.url + "/webhook/r", json={}, timeout=30).json()["run_id"] for _ in range(5)]
        _wait_for(lambda: srv.get("/api/v1/runs").json()["total"] == 2)
        kept = {r["id"] for r in srv.get("/api/v1/runs").json()["items"]}
        assert kept == set(ids[-2:])  # the newest two
        assert _wait_for(lambda: any("retention: deleted" in ln and "beyond the newest 2" in ln for ln in srv.log))
    finally:
        srv.stop()
