"""The real server in a subprocess, spoken to over HTTP: webhooks (auth, respond modes, callbacks, errors),
the REST API, SSE, metrics."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
import requests

from .serverutil import Receiver, hook, serving, write

TOKEN = "api-token-for-tests"
HOOK_TOKEN = "s3cret-hook-token"
HOOK_KEY = "hmac-key-for-tests"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    root = tmp_path_factory.mktemp("srv")
    data = root / "data"
    env = {"HOOK_TOKEN": HOOK_TOKEN, "HOOK_KEY": HOOK_KEY, "HOOK_USER": "n8n", "HOOK_PASS": "pa:ss",
           "PIXELMILL_MAX_BODY": "4096", "PIXELMILL_SSE_HEARTBEAT": "0.2", "PIXELMILL_CALLBACK_BACKOFF": "0.2",
           "PIXELMILL_WORKERS": "4"}
    yield from serving(root, {"done.yaml": """
name: done
inputs: {style: {type: string, default: flat}}
on: {webhook: {path: done, respond: when_done}}
steps:
  - id: prompt
    node: prompt
    with: {template: "a red circle, {{ style }}", vars: {style: "${{ inputs.style }}"}, seed: 1}
outputs: {prompt: "${{ steps.prompt.outputs.text }}", seed: "${{ steps.prompt.outputs.seed }}"}
""", "imm.yaml": """
name: imm
on: {webhook: {path: imm, respond: immediately}}
steps:
  - {id: nap, node: test_sleep, with: {seconds: 0.3, steps: 3}}
outputs: {slept: "${{ steps.nap.outputs.slept }}"}
""", "slow.yaml": """
name: slow
inputs: {seconds: {type: number, default: 2}, steps: {type: integer, default: 10}}
on: {webhook: {path: slow, respond: when_done, respond_timeout: 0.5}}
steps:
  - {id: nap, node: test_sleep, with: {seconds: "${{ inputs.seconds }}", steps: "${{ inputs.steps }}"}}
outputs: {slept: "${{ steps.nap.outputs.slept }}"}
""", "faildone.yaml": f"""
name: faildone
on: {{webhook: {{path: faildone, respond: when_done}}}}
steps:
  - {{id: first, node: test_count, with: {{log: "{data}/faildone.log", text: hi}}}}
  - {{id: breaks, node: test_flaky, with: {{ok_file: "{data}/ok", text: "${{{{ steps.first.outputs.text }}}}"}}}}
outputs: {{text: "${{{{ steps.breaks.outputs.text }}}}"}}
""", "hdr.yaml": """
name: hdr
on: {webhook: {path: hdr, respond: immediately, extra_inputs: ignore,
               auth: {type: header, header: X-Token, secret: HOOK_TOKEN}}}
steps: [{id: p, node: prompt, with: {template: hi}}]
""", "sig.yaml": """
name: sig
on: {webhook: {path: sig, respond: when_done, extra_inputs: ignore,
               auth: {type: hmac, header: X-Signature-256, secret: HOOK_KEY}}}
steps: [{id: p, node: prompt, with: {template: "{{ n }}", vars: {n: "${{ trigger.body.n }}"}}}]
outputs: {text: "${{ steps.p.outputs.text }}"}
""", "basic.yaml": """
name: basic
on: {webhook: {path: basic, respond: immediately,
               auth: {type: basic, username_secret: HOOK_USER, password_secret: HOOK_PASS}}}
steps: [{id: p, node: prompt, with: {template: hi}}]
""", "params.yaml": """
name: params
on: {webhook: {path: "items/:id", methods: [GET, POST], respond: when_done}}
steps: [{id: p, node: prompt, with: {template: "item {{ i }}", vars: {i: "${{ trigger.params.id }}"}}}]
outputs: {text: "${{ steps.p.outputs.text }}"}
"""}, env, token=TOKEN)


# -- respond modes ---------------------------------------------------------------------------------


def test_when_done_returns_declared_outputs(srv):
    r = hook(srv, "done", json={"style": "watercolor"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "succeeded"
    assert body["outputs"] == {"prompt": "a red circle, watercolor", "seed": 1}
    run = srv.get(f"/api/v1/runs/{body['run_id']}").json()
    assert run["trigger_kind"] == "webhook" and run["trigger"]["body"] == {"style": "watercolor"}
    assert run["outputs"] == body["outputs"]


def test_immediately_returns_202_then_run_finishes(srv):
    t0 = time.monotonic()
    r = hook(srv, "imm", json={})
    assert time.monotonic() - t0 < 0.3
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued"
    assert body["status_url"].endswith(f"/api/v1/runs/{body['run_id']}")
    assert body["events_url"].endswith(f"/api/v1/runs/{body['run_id']}/events")
    run = srv.wait_run(body["run_id"])
    assert run["status"] == "succeeded" and run["outputs"] == {"slept": 0.3}


def test_when_done_answers_202_after_respond_timeout(srv):
    t0 = time.monotonic()
    r = hook(srv, "slow", json={"seconds": 1.5})
    took = time.monotonic() - t0
    assert r.status_code == 202, r.text
    assert 0.4 < took < 1.4
    run = srv.wait_run(r.json()["run_id"])
    assert run["status"] == "succeeded"


def test_when_done_failure_names_the_step(srv):
    r = hook(srv, "faildone", json={})
    assert r.status_code == 500, r.text
    body = r.json()
    assert body["status"] == "failed" and body["step_id"] == "breaks"
    assert "does not exist yet" in body["message"]
    assert "Traceback" not in r.text


# -- auth ------------------------------------------------------------------------------------------


def _runs(srv, workflow):
    return srv.get("/api/v1/runs", params={"workflow": workflow, "limit": 500}).json()["total"]


def test_header_auth_missing_wrong_right(srv):
    before = _runs(srv, "hdr")
    r = hook(srv, "hdr", json={})
    assert r.status_code == 401 and r.json()["error"] == "unauthorized" and "X-Token" in r.json()["message"]
    r = hook(srv, "hdr", json={}, headers={"X-Token": "wrong"})
    assert r.status_code == 401 and HOOK_TOKEN not in r.text
    assert _runs(srv, "hdr") == before  # no run for a bad credential
    r = hook(srv, "hdr", json={"a": 1}, headers={"X-Token": HOOK_TOKEN})
    assert r.status_code == 202
    run = srv.wait_run(r.json()["run_id"])
    assert "x-token" not in run["trigger"]["headers"]  # the credential is not stored with the run
    assert HOOK_TOKEN not in json.dumps(run)
    assert _runs(srv, "hdr") == before + 1


def _sign(body: bytes) -> str:
    return "sha256=" + hmac.new(HOOK_KEY.encode(), body, hashlib.sha256).hexdigest()


def test_hmac_signature_and_tampered_body(srv):
    before = _runs(srv, "sig")
    body = json.dumps({"n": 42}).encode()
    headers = {"Content-Type": "application/json"}
    r = hook(srv, "sig", data=body, headers=headers)
    assert r.status_code == 401
    tampered = json.dumps({"n": 43}).encode()
    r = hook(srv, "sig", data=tampered, headers={**headers, "X-Signature-256": _sign(body)})
    assert r.status_code == 401 and "does not match" in r.json()["message"]
    r = hook(srv, "sig", data=body, headers={**headers, "X-Signature-256": "sha256=" + "0" * 64})
    assert r.status_code == 401
    assert _runs(srv, "sig") == before
    r = hook(srv, "sig", data=body, headers={**headers, "X-Signature-256": _sign(body)})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == {"text": "42"}


def test_basic_auth(srv):
    def basic(user, pw):
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}

    assert hook(srv, "basic", json={}).status_code == 401
    assert hook(srv, "basic", json={}, headers=basic("n8n", "nope")).status_code == 401
    assert hook(srv, "basic", json={}, headers={"Authorization": "Basic !!!"}).status_code == 401
    r = hook(srv, "basic", json={}, headers=basic("n8n", "pa:ss"))
    assert r.status_code == 202, r.text


def test_api_bearer_token(srv):
    assert requests.get(srv.url + "/api/v1/runs", timeout=10).status_code == 401
    r = requests.get(srv.url + "/api/v1/runs", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert srv.get("/api/v1/runs").status_code == 200
    assert requests.get(srv.url + "/healthz", timeout=10).json()["status"] == "ok"


# -- errors ----------------------------------------------------------------------------------------


def test_error_responses_are_json(srv):
    r = hook(srv, "done", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_json"
    r = hook(srv, "no/such/path", json={})
    assert r.status_code == 404 and "no workflow listens" in r.json()["message"]
    r = hook(srv, "done", data=b"x" * 5000, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
    r = hook(srv, "done", method="GET")
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    r = hook(srv, "done", json={"style": ["not", "a", "string"]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_inputs" and "style" in r.json()["message"]
    r = srv.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/json"
    for resp in (r,):
        assert "Traceback" not in resp.text


def test_route_parameters_and_get(srv):
    r = hook(srv, "items/abc", method="GET")
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["text"] == "item abc"


# -- callbacks -------------------------------------------------------------------------------------


def test_callback_delivered_with_retry_after_500(srv):
    rx = Receiver(fail_first=1, path="/resume/abc", fail_code=500)
    try:
        r = hook(srv, "done", json={"style": "ink", "callback_url": rx.url})
        assert r.status_code == 202, r.text  # a caller that leaves a callback URL is answered at once
        run_id = r.json()["run_id"]
        rx.wait(1, ok=True)
        assert rx.codes == [500, 200]
        delivered = rx.posts[-1]
        assert delivered["headers"]["Idempotency-Key"] == run_id
        assert delivered["body"]["status"] == "succeeded"
        assert delivered["body"]["outputs"]["prompt"] == "a red circle, ink"
        assert delivered["body"]["run_url"].endswith(run_id)
        time.sleep(0.3)
        assert srv.get(f"/api/v1/runs/{run_id}").json()["callback"]["state"] == "delivered"
    finally:
        rx.close()


def test_callback_url_must_be_http(srv):
    r = hook(srv, "done", json={"callback_url": "file:///etc/passwd"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_callback_url"


# -- SSE -------------------------------------------------------------------------------------------


def _read_sse(resp, until_kind="run.finished", limit=10.0):
    events, comments, cur = [], 0, {}
    t0 = time.monotonic()
    for raw in resp.iter_lines(decode_unicode=True):
        if time.monotonic() - t0 > limit:
            break
        if raw is None:
            continue
        if raw == "":
            if cur.get("data"):
                events.append({"id": int(cur["id"]), "event": cur["event"], "data": json.loads(cur["data"]),
                               "at": time.monotonic() - t0})
                if cur["event"] == until_kind:
                    break
            cur = {}
        elif raw.startswith(":"):
            comments += 1
        else:
            key, _, value = raw.partition(":")
            cur[key] = value.lstrip(" ")
    return events, comments


def test_sse_live_events_in_order_with_progress_and_replay(srv):
    r = hook(srv, "slow", json={"seconds": 1.0})
    assert r.status_code == 202
    run_id = r.json()["run_id"]
    with srv.http.get(srv.url + f"/api/v1/runs/{run_id}/events", stream=True, timeout=20) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events, heartbeats = _read_sse(resp)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run.queued" and kinds[-1] == "run.finished"
    assert "run.started" in kinds and "step.started" in kinds and "step.finished" in kinds
    assert kinds.count("step.progress") >= 3
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    progress = [e["data"]["data"]["value"] for e in events if e["event"] == "step.progress"]
    assert progress == sorted(progress)
    # replay from the middle with Last-Event-ID: exactly the later events, same ids
    middle = ids[len(ids) // 2]
    with srv.http.get(srv.url + f"/api/v1/runs/{run_id}/events", stream=True, timeout=20,
                      headers={"Last-Event-ID": str(middle)}) as resp:
        replay, _ = _read_sse(resp)
    assert [e["id"] for e in replay] == [i for i in ids if i > middle]
    bad = srv.get(f"/api/v1/runs/{run_id}/events", headers={"Last-Event-ID": "abc"})
    assert bad.status_code == 400


def test_sse_heartbeats_while_nothing_happens(srv):
    r = hook(srv, "slow", json={"seconds": 1.2, "steps": 1})  # progress at 0 and at the end only
    with srv.http.get(srv.url + f"/api/v1/runs/{r.json()['run_id']}/events", stream=True, timeout=20) as resp:
        events, heartbeats = _read_sse(resp)
    assert events[-1]["event"] == "run.finished"
    assert heartbeats >= 2  # 0.2 s heartbeat over a ~1 s silence
    assert events[-1]["at"] - events[0]["at"] > 0.4  # streamed live (the run had ~0.7 s left), not buffered


# -- REST API --------------------------------------------------------------------------------------


def test_workflows_list_show_validate_trigger(srv):
    items = srv.get("/api/v1/workflows").json()["items"]
    names = {w["name"] for w in items}
    assert {"done", "imm", "slow", "hdr", "sig", "basic"} <= names
    done = next(w for w in items if w["name"] == "done")
    assert done["webhook"]["url"].endswith("/webhook/done") and done["webhook"]["respond"] == "when_done"
    show = srv.get("/api/v1/workflows/done").json()
    assert show["inputs"]["style"]["default"] == "flat" and "name: done" in show["source"]
    assert srv.get("/api/v1/workflows/nope").status_code == 404
    ok = srv.post("/api/v1/workflows/validate", json={"yaml": "name: x\nsteps: [{id: a, node: prompt, with: {template: t}}]"})
    assert ok.json() == {"valid": True, "name": "x", "steps": 1, "problems": []}
    bad = srv.post("/api/v1/workflows/validate", json={"yaml": "name: x\nsteps: [{id: a, node: promt}]", "file": "f.yaml"})
    problems = bad.json()["problems"]
    assert bad.json()["valid"] is False and problems[0]["file"] == "f.yaml" and "prompt" in problems[0]["hint"]
    r = srv.post("/api/v1/workflows/done/runs", json={"inputs": {"style": "oil"}})
    assert r.status_code == 202
    run = srv.wait_run(r.json()["run_id"])
    assert run["outputs"]["prompt"] == "a red circle, oil" and run["trigger_kind"] == "api"
    r = srv.post("/api/v1/workflows/done/runs", json={"inputs": {"nope": 1}})
    assert r.status_code == 400 and "unknown input 'nope'" in r.json()["message"]


def test_runs_filters_pagination_show(srv):
    ids = [srv.post("/api/v1/workflows/done/runs", json={}).json()["run_id"] for _ in range(3)]
    for rid in ids:
        srv.wait_run(rid)
    page1 = srv.get("/api/v1/runs", params={"workflow": "done", "limit": 2}).json()
    page2 = srv.get("/api/v1/runs", params={"workflow": "done", "limit": 2, "offset": 2}).json()
    assert page1["total"] == page2["total"] >= 3
    assert len(page1["items"]) == 2 and not {r["id"] for r in page1["items"]} & {r["id"] for r in page2["items"]}
    assert all(r["workflow"] == "done" for r in page1["items"] + page2["items"])
    failed = srv.get("/api/v1/runs", params={"status": "failed"}).json()["items"]
    assert all(r["status"] == "failed" for r in failed)
    assert srv.get("/api/v1/runs", params={"limit": 0}).status_code == 400
    assert srv.get("/api/v1/runs", params={"status": "weird"}).status_code == 400
    run = srv.get(f"/api/v1/runs/{ids[0]}").json()
    step = run["steps"][0]
    assert step["step_id"] == "prompt" and step["status"] == "succeeded" and step["duration_s"] >= 0
    assert run["started_at"] and run["finished_at"] and run["duration_s"] >= 0
    assert srv.get("/api/v1/runs/" + "f" * 32).status_code == 404


def test_cancel_running_and_queued_delete(srv):
    r = hook(srv, "slow", json={"seconds": 5})
    run_id = r.json()["run_id"]
    srv.wait_run(run_id, done=("running",))
    c = srv.post(f"/api/v1/runs/{run_id}/cancel")
    assert c.status_code == 200
    assert srv.delete(f"/api/v1/runs/{run_id}").status_code in (204, 409)
    run = srv.wait_run(run_id, timeout=10)
    assert run["status"] == "cancelled"
    assert srv.delete(f"/api/v1/runs/{run_id}").status_code == 204
    assert srv.get(f"/api/v1/runs/{run_id}").status_code == 404
    assert srv.post(f"/api/v1/runs/{run_id}/cancel").status_code == 404


def test_retry_from_failed_step_reuses_earlier_outputs(srv):
    log = srv.data / "faildone.log"
    r = hook(srv, "faildone", json={})
    assert r.status_code == 500
    old_id = r.json()["run_id"]
    assert log.read_text().count(old_id) == 1
    # a retry while the cause persists fails again at the same step, without re-running the first one
    r = srv.post(f"/api/v1/runs/{old_id}/retry")
    assert r.status_code == 202, r.text
    again = srv.wait_run(r.json()["run_id"])
    assert again["status"] == "failed" and again["error"]["step_id"] == "breaks" and again["retry_of"] == old_id
    assert again["id"] not in log.read_text()
    (srv.data / "ok").write_text("ok")
    try:
        r = srv.post(f"/api/v1/runs/{again['id']}/retry")
        assert r.status_code == 202, r.text
        new = srv.wait_run(r.json()["run_id"])
        assert new["status"] == "succeeded" and new["retry_of"] == again["id"]
        assert new["outputs"] == {"text": "HI!"}  # built from the reused output of the first step
        assert new["id"] not in log.read_text()  # the first step was reused, not run again
        first = next(st for st in new["steps"] if st["step_id"] == "first")
        assert first["status"] == "succeeded" and first["attempts"] == 0
        events = srv.get(f"/api/v1/runs/{new['id']}/events").text
        assert '"reused":true' in events
        assert srv.post(f"/api/v1/runs/{new['id']}/retry").status_code == 409  # succeeded runs are final
    finally:
        (srv.data / "ok").unlink()


def test_artifacts_are_path_safe(srv):
    r = hook(srv, "done", json={})
    run_id = r.json()["run_id"]
    folder = srv.home / "runs" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "note.txt").write_text("hello")
    (srv.home / "secret.txt").write_text("top secret")
    listing = srv.get(f"/api/v1/runs/{run_id}/artifacts").json()["items"]
    assert [a["name"] for a in listing] == ["note.txt"]
    got = srv.get(f"/api/v1/runs/{run_id}/artifacts/note.txt")
    assert got.status_code == 200 and got.text == "hello"
    for evil in ("..%2F..%2Fsecret.txt", "%2E%2E", "..", "..%5Csecret.txt", "nope.txt"):
        resp = srv.get(f"/api/v1/runs/{run_id}/artifacts/{evil}")
        assert resp.status_code == 404, evil
        assert "top secret" not in resp.text


def test_nodes_health_metrics_openapi(srv):
    nodes = {n["type"]: n for n in srv.get("/api/v1/nodes").json()["items"]}
    assert "prompt" in nodes and "template" in nodes["prompt"]["inputs"]["properties"]
    metrics = requests.get(srv.url + "/metrics", timeout=10).text
    assert 'pixelmill_runs{status="succeeded"}' in metrics
    assert "pixelmill_queue_depth" in metrics
    assert 'pixelmill_step_duration_seconds_bucket{node="prompt",status="succeeded",le="+Inf"}' in metrics
    doc = requests.get(srv.url + "/api/v1/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.")
    assert "/api/v1/runs/{run_id}/retry" in doc["paths"]
    assert "RunDetail" in doc["components"]["schemas"]


def test_reload_picks_up_new_workflow(srv):
    write(srv.workflows, "late.yaml", """
name: late
on: {webhook: {path: late, respond: when_done}}
steps: [{id: p, node: prompt, with: {template: late}}]
outputs: {text: "${{ steps.p.outputs.text }}"}
""")
    try:
        assert hook(srv, "late", json={}).status_code == 404
        r = srv.post("/api/v1/reload")
        assert r.status_code == 200 and r.json()["added"] == ["late"]
        assert hook(srv, "late", json={}).json()["outputs"] == {"text": "late"}
    finally:
        (srv.workflows / "late.yaml").unlink()
        assert srv.post("/api/v1/reload").json()["removed"] == ["late"]
