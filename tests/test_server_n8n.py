"""The n8n-facing API over real HTTP: the image inline (Accept: image/png, ?inline=base64), signed artifact
URLs, one error shape for sync replies and callbacks, ``status: running`` after respond_timeout, callback
retries over a window with jitter, the resume URL's signature redacted, cached artifacts owned by the new
run, and event subscriptions with signed, retried, persisted deliveries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import time

import pytest
import requests
from PIL import Image

from pixelmill.server.callbacks import next_delay
from pixelmill.server.signing import UrlSigner, redact_url

from .serverutil import Receiver, hook, serving

TOKEN = "api-token-n8n-tests"
RESUME_SIG = "c2lnbmF0dXJlLXNlY3JldC12YWx1ZQ"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    root = tmp_path_factory.mktemp("n8n")
    data = root / "data"
    env = {"PIXELMILL_CALLBACK_BACKOFF": "0.1", "PIXELMILL_CALLBACK_MAX_DELAY": "0.3",
           "PIXELMILL_CALLBACK_WINDOW": "3", "PIXELMILL_SCHEDULER": "0", "PIXELMILL_WORKERS": "4"}
    yield from serving(root, {"img.yaml": """
name: img
inputs: {color: {type: string, default: red}}
on: {webhook: {path: img, respond: when_done}}
steps:
  - {id: draw, node: test_image, with: {color: "${{ inputs.color }}"}}
outputs: {image: "${{ steps.draw.outputs.image }}"}
""", "text.yaml": """
name: text
on: {webhook: {path: text, respond: when_done}}
steps: [{id: p, node: prompt, with: {template: hello, seed: 1}}]
outputs: {text: "${{ steps.p.outputs.text }}"}
""", "broken.yaml": f"""
name: broken
on: {{webhook: {{path: broken, respond: when_done}}}}
steps:
  - {{id: breaks, node: test_flaky, with: {{ok_file: "{data}/never"}}}}
""", "slow.yaml": """
name: slow
on: {webhook: {path: slow, respond: when_done, respond_timeout: 0.3}}
steps: [{id: nap, node: test_sleep, with: {seconds: 1.0, steps: 4}}]
outputs: {slept: "${{ steps.nap.outputs.slept }}"}
"""}, env, token=TOKEN)


def _png(raw: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(raw))
    img.load()
    return img


# -- the image inline --------------------------------------------------------------------------------


def test_accept_image_png_returns_the_image_bytes(srv):
    r = hook(srv, "img", json={"color": "blue"}, headers={"Accept": "image/png"})
    assert r.status_code == 200, r.text[:300]
    assert r.headers["Content-Type"] == "image/png"
    assert _png(r.content).getpixel((0, 0)) == (0, 0, 255)
    run_id = r.headers["X-Pixelmill-Run-Id"]
    again = srv.get(f"/api/v1/runs/{run_id}", headers={"Accept": "image/png"})
    assert again.status_code == 200 and again.content == r.content


def test_json_stays_the_default_and_base64_is_on_request(srv):
    r = hook(srv, "img", json={"color": "green"})
    assert r.status_code == 200 and "data" not in r.json()["outputs"]["image"]
    r = requests.post(srv.url + "/webhook/img?inline=base64", json={"color": "green"}, timeout=30)
    ref = r.json()["outputs"]["image"]
    assert _png(base64.b64decode(ref["data"])).getpixel((0, 0)) == (0, 128, 0)
    run = srv.get(f"/api/v1/runs/{r.json()['run_id']}?inline=base64").json()
    assert run["outputs"]["image"]["data"] == ref["data"]


def test_accept_image_on_a_run_without_images_is_406(srv):
    r = hook(srv, "text", json={}, headers={"Accept": "image/png"})
    assert r.status_code == 406 and r.json()["error"] == "no_image"


# -- signed artifact URLs ------------------------------------------------------------------------------


def test_signed_artifact_url_needs_no_token_and_expires(srv):
    body = hook(srv, "img", json={"color": "red"}).json()
    url = body["outputs"]["image"]["url"]
    assert "sig=" in url and "expires=" in url
    r = requests.get(url, timeout=10)  # no Authorization header
    assert r.status_code == 200 and _png(r.content).getpixel((0, 0)) == (255, 0, 0)
    plain = url.split("?")[0]
    assert requests.get(plain, timeout=10).status_code == 401  # unsigned still needs the token
    assert srv.get(plain.replace(srv.url, "")).status_code == 200
    tampered = url[:-4] + ("0000" if not url.endswith("0000") else "1111")
    assert requests.get(tampered, timeout=10).status_code == 403
    other = url.replace("draw-image.png", "draw-image-2.png")
    assert requests.get(other, timeout=10).status_code == 403  # a signature is for one artifact only


def test_signature_expiry_is_checked():
    signer = UrlSigner(b"k", ttl=10)
    url = signer.artifact_url("", "r1", "a.png", now=time.time() - 60)
    query = dict(p.split("=") for p in url.split("?")[1].split("&"))
    assert signer.check("r1", "a.png", query["expires"], query["sig"]) == "expired"
    fresh = dict(p.split("=") for p in signer.artifact_url("", "r1", "a.png").split("?")[1].split("&"))
    assert signer.check("r1", "a.png", fresh["expires"], fresh["sig"]) is None


# -- one error shape --------------------------------------------------------------------------------


def test_sync_reply_and_callback_share_the_error_shape(srv):
    sync = hook(srv, "broken", json={})
    assert sync.status_code == 500
    err = sync.json()["error"]
    assert sync.json()["status"] == "failed"
    assert err["step_id"] == "breaks" and err["node"] == "test_flaky" and err["type"] == "RuntimeError"
    assert "does not exist yet" in err["message"]
    rx = Receiver()
    try:
        r = hook(srv, "broken", json={"callback_url": rx.url})
        assert r.status_code == 202
        rx.wait(1)
        called = rx.posts[0]["body"]
        assert called["status"] == "failed"
        assert {k: called["error"][k] for k in ("step_id", "node", "type")} == \
               {k: err[k] for k in ("step_id", "node", "type")}
    finally:
        rx.close()


# -- respond_timeout ----------------------------------------------------------------------------------


def test_respond_timeout_says_running_with_the_status_url(srv):
    r = hook(srv, "slow", json={})
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "running" and body["run_status"] in ("queued", "running")
    assert body["status_url"].endswith(f"/api/v1/runs/{body['run_id']}")
    assert r.headers["Location"] == body["status_url"]
    assert "outputs" not in body  # nothing a client could take for a result
    assert srv.wait_run(body["run_id"])["status"] == "succeeded"


# -- callbacks: retry window, redaction -----------------------------------------------------------------


def test_backoff_is_exponential_capped_and_jittered():
    assert next_delay(1, 1.0, 300, rng=lambda: 0.0) == 0.5
    assert next_delay(1, 1.0, 300, rng=lambda: 0.999) == pytest.approx(0.9995)
    assert next_delay(5, 1.0, 300, rng=lambda: 0.0) == 8.0
    assert next_delay(40, 1.0, 300, rng=lambda: 0.0) == 150.0
    assert len({round(next_delay(3, 1.0, 300), 6) for _ in range(20)}) > 1


def test_callback_retries_over_the_window_visible_in_the_run(srv):
    rx = Receiver(fail_first=4, path=f"/webhook-waiting/77?signature={RESUME_SIG}")
    try:
        r = hook(srv, "text", json={"callback_url": rx.url})
        run_id = r.json()["run_id"]
        rx.wait(1, ok=True)
        assert [p["code"] for p in rx.posts] == [503, 503, 503, 503, 200]
        gaps = [b["at"] - a["at"] for a, b in zip(rx.posts, rx.posts[1:])]
        assert all(g >= 0.04 for g in gaps)
        time.sleep(0.3)
        run = srv.get(f"/api/v1/runs/{run_id}").json()
        cb = run["callback"]
        assert cb["state"] == "delivered" and cb["attempts"] == 5 and cb["first_failure_at"] and cb["retry_until"]
        assert RESUME_SIG not in json.dumps(run) and "signature=REDACTED" in cb["url"]
    finally:
        rx.close()


def test_callback_gives_up_after_the_window(srv):
    rx = Receiver(fail_first=10_000)
    try:
        run_id = hook(srv, "text", json={"callback_url": rx.url}).json()["run_id"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            cb = srv.get(f"/api/v1/runs/{run_id}").json()["callback"]
            if cb["state"] == "failed":
                break
            time.sleep(0.2)
        assert cb["state"] == "failed" and cb["attempts"] >= 8  # capped delays fill the window
        span = rx.posts[-1]["at"] - rx.posts[0]["at"]
        assert 1.0 < span <= 3.5  # PIXELMILL_CALLBACK_WINDOW=3
    finally:
        rx.close()


def test_resume_url_signature_never_stored_or_logged(srv):
    rx = Receiver(fail_first=1, path=f"/webhook-waiting/9?signature={RESUME_SIG}")
    try:
        run_id = hook(srv, "text", json={"callback_url": rx.url}).json()["run_id"]
        rx.wait(1, ok=True)
        assert rx.posts[-1]["headers"]["Idempotency-Key"] == run_id  # the real URL was called
    finally:
        rx.close()
    raw = (srv.home / "pixelmill.db").read_bytes()
    assert RESUME_SIG.encode() not in raw
    assert not any(RESUME_SIG in line for line in srv.log)
    run = srv.get(f"/api/v1/runs/{run_id}").json()
    assert "signature=REDACTED" in run["trigger"]["body"]["callback_url"]


def test_redact_url_keeps_the_rest():
    assert redact_url("https://n8n.example/webhook-waiting/5?signature=abc&x=1") == \
        "https://n8n.example/webhook-waiting/5?signature=REDACTED&x=1"


# -- cached outputs own their artifacts ------------------------------------------------------------------


def test_cached_image_survives_deleting_the_run_that_made_it(srv):
    first = hook(srv, "img", json={"color": "yellow"}).json()
    second = hook(srv, "img", json={"color": "yellow"}).json()
    steps = srv.get(f"/api/v1/runs/{second['run_id']}").json()["steps"]
    assert steps[0]["status"] == "cached"
    assert second["outputs"]["image"]["run_id"] == second["run_id"]
    assert srv.delete(f"/api/v1/runs/{first['run_id']}").status_code == 204
    r = requests.get(second["outputs"]["image"]["url"], timeout=10)
    assert r.status_code == 200 and _png(r.content).getpixel((0, 0)) == (255, 255, 0)
    third = hook(srv, "img", json={"color": "yellow"}).json()  # the cache entry moved to the second run's copy
    assert srv.get(f"/api/v1/runs/{third['run_id']}").json()["steps"][0]["status"] == "cached"
    assert requests.get(third["outputs"]["image"]["url"], timeout=10).status_code == 200


# -- subscriptions --------------------------------------------------------------------------------------


def test_subscription_lifecycle_signed_retried_and_filtered(srv):
    rx = Receiver(fail_first=1)
    try:
        r = srv.post("/api/v1/subscriptions", json={"url": rx.url, "events": ["run.failed"], "workflow": "broken"})
        assert r.status_code == 201, r.text
        sub = r.json()
        assert sub["secret"] and "secret" not in json.dumps(srv.get("/api/v1/subscriptions").json())
        assert sub["id"] in [s["id"] for s in srv.get("/api/v1/subscriptions").json()["items"]]
        hook(srv, "text", json={})  # succeeded, other workflow: not delivered
        failed = hook(srv, "broken", json={}).json()
        rx.wait(1, ok=True)
        assert [p["code"] for p in rx.posts] == [503, 200]
        post = rx.posts[-1]
        assert post["body"]["event"] == "run.failed" and post["body"]["run"]["run_id"] == failed["run_id"]
        assert post["body"]["run"]["error"]["step_id"] == "breaks"
        expected = "sha256=" + hmac.new(sub["secret"].encode(), post["raw"], hashlib.sha256).hexdigest()
        assert post["headers"]["X-Pixelmill-Signature"] == expected
        assert post["headers"]["X-Pixelmill-Delivery"] == rx.posts[0]["headers"]["X-Pixelmill-Delivery"]
        time.sleep(0.3)
        deliveries = srv.get(f"/api/v1/runs/{failed['run_id']}").json()["deliveries"]
        assert deliveries[0]["state"] == "delivered" and deliveries[0]["attempts"] == 2
        assert srv.delete(f"/api/v1/subscriptions/{sub['id']}").status_code == 204
        assert srv.delete(f"/api/v1/subscriptions/{sub['id']}").status_code == 404
        hook(srv, "broken", json={})
        time.sleep(0.5)
        assert len(rx.posts) == 2  # unsubscribed: nothing more
    finally:
        rx.close()


def test_subscription_input_is_checked(srv):
    assert srv.post("/api/v1/subscriptions", json={"url": "file:///etc/passwd"}).status_code == 400
    assert srv.post("/api/v1/subscriptions", json={"url": "http://x.test/", "events": ["run.exploded"]}) \
        .status_code == 400
    assert srv.post("/api/v1/subscriptions", json={"url": "http://x.test/", "workflow": "nope"}).status_code == 404
    assert requests.get(srv.url + "/api/v1/subscriptions", timeout=10).status_code == 401


def test_subscriptions_persist_across_restart(srv):
    sub = srv.post("/api/v1/subscriptions", json={"url": "http://127.0.0.1:9/x"}).json()
    srv.stop()
    srv.start()
    try:
        assert sub["id"] in [s["id"] for s in srv.get("/api/v1/subscriptions").json()["items"]]
    finally:
        srv.delete(f"/api/v1/subscriptions/{sub['id']}")


def test_a_sealed_callback_url_under_another_key_fails_cleanly(tmp_path):
    """A pending callback sealed with an older signing key is marked failed, not retried forever."""
    from pixelmill.runtime import Runtime
    from pixelmill.server.callbacks import CallbackDispatcher
    from pixelmill.server.signing import Sealer
    from pixelmill.settings import Settings

    runtime = Runtime.create(Settings.from_env(environ={}, home=tmp_path))
    try:
        run_id = runtime.store.create_run("wf", inputs={})
        old = CallbackDispatcher(runtime, lambda run, base: {}, sealer=Sealer(b"old-key"))
        old.register(run_id, f"http://127.0.0.1:9/resume?signature={RESUME_SIG}", "")
        new = CallbackDispatcher(runtime, lambda run, base: {}, sealer=Sealer(b"new-key"))
        new._deliver(run_id)
        status = new.status(run_id)
        assert status["state"] == "failed" and "SIGNING_KEY" in status["last_error"]
        assert RESUME_SIG not in status["url"]
    finally:
        runtime.close()
