"""post_social: each target against a local fake of its API, through the real executor."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from pixelmill.loader import load_file, load_text
from pixelmill.node import ArtifactRef, Model, Node
from pixelmill.posting.ledger import Ledger
from pixelmill.problems import WorkflowInvalid
from pixelmill.runtime import Runtime
from pixelmill.settings import Settings
from pixelmill.status import RunStatus
from pixelmill.store import RunStore

from .posting_fakes import FakeBluesky, FakeMastodon, FakeWebhooks

ROOT = Path(__file__).resolve().parent.parent
MTOKEN = "mastodon-token-5ecret-0123456789"
BPASS = "abcd-efgh-ijkl-mnop"
HANDLE = "pixel.example.com"
HOOK_TOKEN = "discord-hook-token-s3cr3t-XYZ"
N8N_TOKEN = "n8n-header-token-98765"
AI = b"http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
       b'Iptc4xmpExt:DigitalSourceType="' + AI + b'"/></rdf:RDF></x:xmpmeta>')
CAPTION = "a lighthouse on a cliff at dawn"


class FixtureConfig(Model):
    width: int = 64
    height: int = 48
    count: int = 1
    noise: bool = False
    label: bool = True  # False: a plain image, as if label_ai never saw it


class FixtureOutputs(Model):
    image: ArtifactRef
    images: list[ArtifactRef]


class FixtureImage(Node):
    """Test-only: writes PNG images carrying the IPTC 'trained algorithmic media' XMP label."""

    type = "fixture_image"
    Config = FixtureConfig
    Outputs = FixtureOutputs

    def run(self, inputs, ctx):
        refs = []
        for n in range(self.config.count):
            c = self.config
            if c.noise:
                im = Image.frombytes("RGB", (c.width, c.height), os.urandom(c.width * c.height * 3))
            else:
                im = Image.new("RGB", (c.width, c.height), (40 * n % 255, 120, 200))
            info = PngImagePlugin.PngInfo()
            if c.label:
                info.add_itxt("XML:com.adobe.xmp", XMP.decode())
            ref, path = ctx.new_artifact(f"img{n}.png", "image/png")
            im.save(path, "PNG", pnginfo=info)
            refs.append(ref)
        return FixtureOutputs(image=refs[0], images=refs)


class Boom(Node):
    """Test-only: fails (after the post step) so the run fails."""

    type = "boom"

    def run(self, inputs, ctx):
        raise RuntimeError("later step failed")


@pytest.fixture
def env():
    return {"MASTODON_TOKEN": MTOKEN, "BSKY_PASSWORD": BPASS, "N8N_TOKEN": N8N_TOKEN}


@pytest.fixture
def rt(tmp_path, env):
    runtime = Runtime.create(Settings.from_env(environ={}, home=tmp_path / "home"), environ=env)
    runtime.registry.register(FixtureImage)
    runtime.registry.register(Boom)
    yield runtime
    runtime.close()


def flow(config: dict, *, with_: dict | None = None, image: dict | None = None, retry: dict | None = None,
         after: bool = False, images_expr: str = "${{ steps.img.outputs.images }}") -> str:
    post = {"id": "post", "node": "post_social", "config": config,
            "with": with_ if with_ is not None else {
                "text": "Dawn over the cliffs", "images": images_expr,
                "caption": "${{ inputs.caption }}"}}
    if retry:
        post["retry"] = retry
    steps = [{"id": "img", "node": "fixture_image", "config": image or {}}, post]
    if after:
        steps.append({"id": "after", "node": "boom", "needs": ["post"]})
    return json.dumps({"name": "posting-test", "inputs": {"caption": {"type": "string", "default": CAPTION}},
                       "steps": steps}, ensure_ascii=False)


def run(rt, text, inputs=None):
    return rt.run(load_text(text, "posting-test.yaml", rt.registry), inputs or {})


def mastodon_cfg(server, **extra):
    return {"target": "mastodon", "instance": server.url, "token_secret": "MASTODON_TOKEN",
            "disclosure": "#AIgenerated", "language": "en", "visibility": "unlisted",
            "retry_backoff": 0.01, "poll_interval": 0.01, **extra}


def bluesky_cfg(server, **extra):
    return {"target": "bluesky", "service": server.url, "handle": HANDLE, "password_secret": "BSKY_PASSWORD",
            "disclosure": "#AIgenerated", "language": "en", "retry_backoff": 0.01, **extra}


def artifact_bytes(rt, result, n=0) -> bytes:
    ref = result.steps["img"].outputs["images"][n]
    return (rt.store.artifacts_root / ref["run_id"] / ref["name"]).read_bytes()


# -- Mastodon ---------------------------------------------------------------------------------

def test_mastodon_exact_requests_for_image_with_alt_text(rt):
    with FakeMastodon(MTOKEN) as m:
        result = run(rt, flow(mastodon_cfg(m, spoiler_text="AI art")))
        assert result.status is RunStatus.SUCCEEDED, result.error
        assert [(r.method, r.path) for r in m.requests] == [
            ("POST", "/api/v2/media"), ("GET", "/api/v1/media/100"), ("GET", "/api/v1/media/100"),
            ("POST", "/api/v1/statuses")]  # 202 on upload, 206 while processing, then 200
        upload, _, _, status = m.requests
        assert upload.headers["Authorization"] == f"Bearer {MTOKEN}"
        name, ctype, data = upload.files["file"]
        assert ctype == "image/png" and data == artifact_bytes(rt, result)  # the labelled file, untouched
        assert upload.form["description"] == [f"{CAPTION} (AI-generated image)"]
        assert status.form == {"status": ["Dawn over the cliffs\n\n#AIgenerated"], "visibility": ["unlisted"],
                               "media_ids[]": ["100"], "language": ["en"], "spoiler_text": ["AI art"]}
        key = status.headers["Idempotency-Key"]
        assert key.startswith("pixelmill-") and len(key) > 20
        out = result.steps["post"].outputs
        assert out["remote_id"] == "1000" and out["url"] == f"{m.url}/@pixel/1000"
        assert out["state"] == "sent" and out["deduplicated"] is False
        assert len(m.statuses) == 1 and m.statuses[0]["media_attachments"][0]["description"].endswith(
            "(AI-generated image)")
        row, = Ledger(rt.store).rows()
        assert row["state"] == "sent" and row["remote_id"] == "1000" and row["run_id"] == result.run_id


def test_mastodon_500_then_success_posts_once(rt):
    with FakeMastodon(MTOKEN) as m:
        m.script["statuses"] = [500]
        result = run(rt, flow(mastodon_cfg(m)))
        assert result.status is RunStatus.SUCCEEDED, result.error
        assert len(m.calls("/api/v1/statuses")) == 2
        assert len(m.statuses) == 1
        assert result.steps["post"].outputs["remote_id"] == m.statuses[0]["id"]


def test_mastodon_timeout_after_post_created_then_retry_posts_once(rt):
    with FakeMastodon(MTOKEN) as m:
        m.script["statuses"] = ["stall"]   # creates the status, answers after the client gave up
        m.stall_s = 1.0
        result = run(rt, flow(mastodon_cfg(m, timeout=0.3)))
        assert result.status is RunStatus.SUCCEEDED, result.error
        calls = m.calls("/api/v1/statuses")
        assert len(calls) == 2 and calls[0].headers["Idempotency-Key"] == calls[1].headers["Idempotency-Key"]
        assert len(m.statuses) == 1
        assert result.steps["post"].outputs["remote_id"] == m.statuses[0]["id"]


def test_mastodon_timeout_then_step_retry_posts_once(rt):
    """No request-level retries: the step's retry resumes the unconfirmed post with the same key."""
    with FakeMastodon(MTOKEN) as m:
        m.script["statuses"] = ["stall"]
        m.stall_s = 1.0
        result = run(rt, flow(mastodon_cfg(m, timeout=0.3, retries=0), retry={"max_attempts": 2, "delay": 0}))
        assert result.status is RunStatus.SUCCEEDED, result.error
        assert result.steps["post"].attempts == 2
        assert len(m.calls("/api/v1/statuses")) == 2 and len(m.statuses) == 1
        row, = Ledger(rt.store).rows()
        assert row["state"] == "sent" and row["attempts"] == 2


def test_mastodon_429_retry_after_is_honoured(rt):
    with FakeMastodon(MTOKEN) as m:
        m.script["statuses"] = [(429, {"Retry-After": "1"})]
        result = run(rt, flow(mastodon_cfg(m)))
        assert result.status is RunStatus.SUCCEEDED, result.error
        first, second = m.calls("/api/v1/statuses")
        assert second.t - first.t >= 0.95
        assert len(m.statuses) == 1


def test_mastodon_retry_after_above_cap_fails_without_waiting(rt):
    with FakeMastodon(MTOKEN) as m:
        m.script["statuses"] = [(429, {"Retry-After": "3600"})]
        t0 = time.monotonic()
        result = run(rt, flow(mastodon_cfg(m, max_retry_wait=5)))
        assert time.monotonic() - t0 < 5
        assert result.status is RunStatus.FAILED
        assert "HTTP 429" in result.error["message"] and "max_retry_wait" in result.error["message"]
        assert len(m.calls("/api/v1/statuses")) == 1 and not m.statuses


def test_mastodon_4xx_is_not_retried_and_platform_message_surfaces(rt, env):
    env["MASTODON_TOKEN"] = "wrong-token-value"
    with FakeMastodon(MTOKEN) as m:
        result = run(rt, flow(mastodon_cfg(m), retry={"max_attempts": 1}))
        assert result.status is RunStatus.FAILED
        assert len(m.requests) == 1
        msg = result.error["message"]
        assert "HTTP 401" in msg and "The access token is invalid" in msg and "wrong-token-value" not in msg
        row, = Ledger(rt.store).rows()
        assert row["state"] == "failed"


def test_mastodon_six_images_fail_preflight_with_no_request(rt):
    with FakeMastodon(MTOKEN) as m:
        result = run(rt, flow(mastodon_cfg(m), image={"count": 6}))
        assert result.status is RunStatus.FAILED
        msg = result.error["message"]
        assert "6 images" in msg and "at most 4" in msg and "nothing was sent" in msg
        assert m.requests == []
        assert Ledger(rt.store).rows() == []


def test_mastodon_missing_alt_text_fails_preflight(rt):
    with FakeMastodon(MTOKEN) as m:
        result = run(rt, flow(mastodon_cfg(m, alt_suffix=""), with_={
            "text": "x", "images": "${{ steps.img.outputs.images }}"}))
        assert result.status is RunStatus.FAILED
        assert "has no alt text" in result.error["message"] and m.requests == []


def test_mastodon_long_text_fails_or_is_truncated_with_ellipsis(rt):
    long_text = "word " * 150  # 750 characters
    with FakeMastodon(MTOKEN) as m:
        bad = run(rt, flow(mastodon_cfg(m), with_={"text": long_text, "caption": CAPTION,
                                                    "images": "${{ steps.img.outputs.images }}"}))
        assert bad.status is RunStatus.FAILED and m.requests == []
        assert "allows 500" in bad.error["message"] and "allow_truncate" in bad.error["message"]
        ok = run(rt, flow(mastodon_cfg(m, allow_truncate=True), with_={
            "text": long_text + " https://example.com/" + "a" * 100, "caption": CAPTION,
            "images": "${{ steps.img.outputs.images }}"}))
        assert ok.status is RunStatus.SUCCEEDED, ok.error
        sent = m.statuses[0]
        text = m.calls("/api/v1/statuses")[0].form["status"][0]
        assert text.endswith("…\n\n#AIgenerated") and len(text) <= 500 and sent["id"]
        assert any("cut to" in w for w in ok.steps["post"].outputs["warnings"])


def test_mastodon_dry_run_sends_nothing_and_shows_requests(rt):
    with FakeMastodon(MTOKEN) as m:
        result = run(rt, flow(mastodon_cfg(m, dry_run=True)))
        assert result.status is RunStatus.SUCCEEDED, result.error
        assert m.requests == []
        out = result.steps["post"].outputs
        assert out["state"] == "dry_run"
        reqs = out["request"]
        assert [r["url"].removeprefix(m.url) for r in reqs] == ["/api/v2/media", "/api/v1/statuses"]
        assert reqs[1]["headers"]["Authorization"] == "Bearer ***"
        assert ["status", "Dawn over the cliffs\n\n#AIgenerated"] in reqs[1]["form"]
        assert MTOKEN not in json.dumps(out)


def crash_before_first_mark_sent(monkeypatch) -> None:
    """The first ``Ledger.mark_sent`` raises, as a process dying after the post and before the ledger
    said 'sent' would; later calls record as usual."""
    calls = []
    real = Ledger.mark_sent

    def crash_once(self, *a, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated crash before recording")
        return real(self, *a, **kw)

    monkeypatch.setattr(Ledger, "mark_sent", crash_once)


def test_crash_between_sent_and_recorded_then_rerun_posts_once(rt, monkeypatch):
    """The post reached Mastodon but the process died before the ledger said 'sent'; a re-run of the
    failed run (retry_of) resumes with the same Idempotency-Key and gets the same status back."""
    crash_before_first_mark_sent(monkeypatch)
    with FakeMastodon(MTOKEN) as m:
        text = flow(mastodon_cfg(m))
        loaded = load_text(text, "posting-test.yaml", rt.registry)
        first = rt.run(loaded, {})
        assert first.status is RunStatus.FAILED and len(m.statuses) == 1
        assert Ledger(rt.store).rows()[0]["state"] == "sending"
        rerun = rt.store.create_run(loaded.name, inputs={"caption": CAPTION}, retry_of=first.run_id)
        second = rt.executor.execute(loaded, rerun, inputs={"caption": CAPTION})
        assert second.status is RunStatus.SUCCEEDED, second.error
        assert len(m.statuses) == 1
        assert second.steps["post"].outputs["remote_id"] == m.statuses[0]["id"]
        row, = Ledger(rt.store).rows()
        assert row["state"] == "sent" and row["run_id"] == first.run_id and row["last_run_id"] == rerun


def test_rerun_of_failed_run_after_post_was_sent_sends_nothing(rt):
    with FakeMastodon(MTOKEN) as m:
        loaded = load_text(flow(mastodon_cfg(m), after=True), "posting-test.yaml", rt.registry)
        first = rt.run(loaded, {})
        assert first.status is RunStatus.FAILED and first.steps["post"].status.value == "succeeded"
        n = len(m.requests)
        rerun = rt.store.create_run(loaded.name, inputs={"caption": CAPTION}, retry_of=first.run_id)
        second = rt.executor.execute(loaded, rerun, inputs={"caption": CAPTION})
        assert len(m.requests) == n and len(m.statuses) == 1
        out = second.steps["post"].outputs
        assert out["deduplicated"] is True and out["remote_id"] == m.statuses[0]["id"]


# -- Bluesky ----------------------------------------------------------------------------------

def test_bluesky_exact_requests_for_image_with_alt_text(rt):
    with FakeBluesky(HANDLE, BPASS) as b:
        result = run(rt, flow(bluesky_cfg(b)))
        assert result.status is RunStatus.SUCCEEDED, result.error
        paths = [r.path for r in b.requests]
        assert paths == ["/xrpc/com.atproto.server.createSession", "/xrpc/com.atproto.repo.uploadBlob",
                         "/xrpc/com.atproto.repo.createRecord"]
        login, upload, create = b.requests
        assert login.json == {"identifier": HANDLE, "password": BPASS}
        assert upload.headers["Content-Type"] == "image/png" and upload.body == artifact_bytes(rt, result)
        assert upload.headers["Authorization"].startswith("Bearer ")
        body = create.json
        assert body["repo"] == b.did and body["collection"] == "app.bsky.feed.post"
        rkey = body["rkey"]
        rec = body["record"]
        assert rec["$type"] == "app.bsky.feed.post" and rec["text"] == "Dawn over the cliffs\n\n#AIgenerated"
        assert rec["langs"] == ["en"] and rec["createdAt"].endswith("Z")
        img, = rec["embed"]["images"]
        assert rec["embed"]["$type"] == "app.bsky.embed.images"
        assert img["alt"] == f"{CAPTION} (AI-generated image)"
        assert img["aspectRatio"] == {"width": 64, "height": 48}
        assert img["image"]["ref"]["$link"] in b.blobs and img["image"]["mimeType"] == "image/png"
        tag = rec["facets"][0]
        start, end = tag["index"]["byteStart"], tag["index"]["byteEnd"]
        assert rec["text"].encode()[start:end] == b"#AIgenerated"
        assert tag["features"] == [{"$type": "app.bsky.richtext.facet#tag", "tag": "AIgenerated"}]
        out = result.steps["post"].outputs
        assert out["remote_id"] == f"at://{b.did}/app.bsky.feed.post/{rkey}"
        assert out["url"] == f"https://bsky.app/profile/{HANDLE}/post/{rkey}"


def test_bluesky_session_is_reused_and_refreshed(rt):
    with FakeBluesky(HANDLE, BPASS) as b:
        for _ in range(2):
            assert run(rt, flow(bluesky_cfg(b))).status is RunStatus.SUCCEEDED
        assert b.sessions_created == 1 and len(b.records) == 2
        b.expire_access_tokens()
        result = run(rt, flow(bluesky_cfg(b)))
        assert result.status is RunStatus.SUCCEEDED, result.error
        assert b.sessions_created == 1 and b.refreshes == 1 and len(b.records) == 3


def test_bluesky_oversized_image_is_recompressed_under_blob_limit_keeping_label(rt):
    with FakeBluesky(HANDLE, BPASS) as b:
        result = run(rt, flow(bluesky_cfg(b), image={"width": 900, "height": 700, "noise": True}))
        assert result.status is RunStatus.SUCCEEDED, result.error
        original = artifact_bytes(rt, result)
        assert len(original) > 1_000_000
        upload, = b.calls("uploadBlob")
        assert len(upload.body) <= 1_000_000 and upload.headers["Content-Type"] == "image/jpeg"
        assert AI in upload.body  # the IPTC DigitalSourceType label survives recompression
        with Image.open(io.BytesIO(upload.body)) as im:
            size = im.size
        img = b.records[next(iter(b.records))]["value"]["embed"]["images"][0]
        assert img["aspectRatio"] == {"width": size[0], "height": size[1]}
        assert any("recompressed" in w for w in result.steps["post"].outputs["warnings"])


def test_bluesky_timeout_after_record_created_then_retry_posts_once(rt):
    with FakeBluesky(HANDLE, BPASS) as b:
        b.script["com.atproto.repo.createRecord"] = ["stall"]
        b.stall_s = 1.0
        result = run(rt, flow(bluesky_cfg(b, timeout=0.3)))
        assert result.status is RunStatus.SUCCEEDED, result.error
        assert len(b.records) == 1 and len(b.calls("createRecord")) == 1
        assert len(b.calls("getRecord")) == 1  # found instead of created again
        assert result.steps["post"].outputs["remote_id"] == next(iter(b.records.values()))["uri"]


def test_bluesky_timeout_then_step_retry_posts_once(rt):
    with FakeBluesky(HANDLE, BPASS) as b:
        b.script["com.atproto.repo.createRecord"] = ["stall"]
        b.stall_s = 1.0
        result = run(rt, flow(bluesky_cfg(b, timeout=0.3, retries=0), retry={"max_attempts": 2, "delay": 0}))
        assert result.status is RunStatus.SUCCEEDED, result.error
        assert len(b.records) == 1 and result.steps["post"].attempts == 2
        assert len(b.calls("uploadBlob")) == 1  # the resumed attempt found the record, uploaded nothing


def test_bluesky_500_then_success_posts_once(rt):
    with FakeBluesky(HANDLE, BPASS) as b:
        b.script["com.atproto.repo.createRecord"] = [500]
        result = run(rt, flow(bluesky_cfg(b)))
        assert result.status is RunStatus.SUCCEEDED, result.error
        assert len(b.records) == 1 and len(b.calls("createRecord")) == 2


def test_bluesky_counts_graphemes_and_bytes(rt):
    e_acute = "e\u0301"  # one grapheme, two code points
    family = "\U0001F468\u200d\U0001F469\u200d\U0001F467"  # one grapheme, 18 bytes of UTF-8
    with FakeBluesky(HANDLE, BPASS) as b:
        ok = run(rt, flow(bluesky_cfg(b, disclosure=None), with_={"text": e_acute * 300}))
        assert ok.status is RunStatus.SUCCEEDED, ok.error
        bad = run(rt, flow(bluesky_cfg(b, disclosure=None), with_={"text": e_acute * 301}))
        assert bad.status is RunStatus.FAILED and "301 graphemes, Bluesky allows 300" in bad.error["message"]
        heavy = run(rt, flow(bluesky_cfg(b, disclosure=None), with_={"text": family * 200}))
        assert heavy.status is RunStatus.FAILED and "3,600 bytes" in heavy.error["message"]
        cut = run(rt, flow(bluesky_cfg(b, allow_truncate=True), with_={"text": family * 200}))
        assert cut.status is RunStatus.SUCCEEDED, cut.error
        text = cut.steps["post"].outputs["text"]
        assert text.endswith("…\n\n#AIgenerated") and len(text.encode()) <= 3000
        assert len(b.records) == 2


def test_bluesky_wrong_password_surfaces_platform_message(rt, env):
    env["BSKY_PASSWORD"] = "wrong-pass-word"
    with FakeBluesky(HANDLE, BPASS) as b:
        result = run(rt, flow(bluesky_cfg(b)))
        assert result.status is RunStatus.FAILED
        assert "Invalid identifier or password" in result.error["message"]
        assert "wrong-pass-word" not in json.dumps(result.error)
        assert len(b.requests) == 1


# -- webhooks ---------------------------------------------------------------------------------

def test_discord_webhook_multipart_with_wait(rt, env):
    with FakeWebhooks() as w:
        env["DISCORD_URL"] = f"{w.url}/api/webhooks/123/{HOOK_TOKEN}"
        result = run(rt, flow({"target": "webhook", "flavour": "discord", "url_secret": "DISCORD_URL",
                               "disclosure": "Image generated with AI"}))
        assert result.status is RunStatus.SUCCEEDED, result.error
        msg, = w.messages
        assert msg.path == f"/api/webhooks/123/{HOOK_TOKEN}" and msg.query["wait"] == ["true"]
        payload = json.loads(msg.form["payload_json"][0])
        assert payload["content"] == "Dawn over the cliffs\n\nImage generated with AI"
        assert payload["attachments"] == [{"id": 0, "filename": "img-img0.png",
                                           "description": f"{CAPTION} (AI-generated image)"}]
        assert msg.files["files[0]"][2] == artifact_bytes(rt, result)
        assert result.steps["post"].outputs["remote_id"] == "5001"
        assert HOOK_TOKEN not in json.dumps(result.steps["post"].outputs)


def test_slack_webhook_needs_image_urls(rt):
    with FakeWebhooks() as w:
        cfg = {"target": "webhook", "flavour": "slack", "url": f"{w.url}/services/T0/B0/x"}
        bad = run(rt, flow(cfg))
        assert bad.status is RunStatus.FAILED and "image_base_url" in bad.error["message"] and not w.requests
        good = run(rt, flow({**cfg, "image_base_url": "https://pixelmill.example/runs/{run_id}/{name}"}))
        assert good.status is RunStatus.SUCCEEDED, good.error
        body = w.messages[0].json
        assert body["text"] == "Dawn over the cliffs\n\n#AIgenerated"  # default disclosure: the image is labelled
        assert body["blocks"][1]["type"] == "image"
        assert body["blocks"][1]["image_url"].startswith("https://pixelmill.example/runs/")
        assert body["blocks"][1]["alt_text"].endswith("(AI-generated image)")


def test_n8n_webhook_json_with_base64_template_and_header_auth(rt):
    with FakeWebhooks() as w:
        cfg = {"target": "webhook", "flavour": "n8n", "url": f"{w.url}/webhook/pixelmill-posts",
               "auth_header": "X-Token", "auth_secret": "N8N_TOKEN", "disclosure": False,  # the labels travel
               "body": {"message": "{{ text }} ({{ run_id }})", "images": "{{ images }}", "labels": "{{ labels }}",
                        "kind": "ai-post"}}
        result = run(rt, flow(cfg, with_={"text": "hello", "images": "${{ steps.img.outputs.images }}",
                                          "caption": CAPTION, "labels": {"ai_generated": True}}))
        assert result.status is RunStatus.SUCCEEDED, result.error
        msg, = w.messages
        assert msg.headers["X-Token"] == N8N_TOKEN and msg.headers["Idempotency-Key"].startswith("pixelmill-")
        body = msg.json
        assert body["message"] == f"hello ({result.run_id})" and body["kind"] == "ai-post"
        assert body["labels"] == {"ai_generated": True}
        import base64
        assert base64.b64decode(body["images"][0]["data_base64"]) == artifact_bytes(rt, result)


def test_webhook_unconfirmed_delivery_is_not_resent(rt):
    """Discord cannot drop a duplicate: after a timeout the outcome is unknown, so no second send."""
    with FakeWebhooks() as w:
        w.script["discord"] = ["stall"]
        w.stall_s = 1.0
        cfg = {"target": "webhook", "flavour": "discord", "url": f"{w.url}/api/webhooks/1/tok", "timeout": 0.3}
        result = run(rt, flow(cfg, retry={"max_attempts": 3, "delay": 0}))
        assert result.status is RunStatus.FAILED
        assert len(w.messages) == 1 and len(w.requests) == 1
        assert "may already be there" in result.error["message"]


# -- outbox -----------------------------------------------------------------------------------

def test_outbox_writes_one_folder_per_post_atomically(rt, tmp_path):
    folder = tmp_path / "out"
    text = flow({"target": "outbox", "folder": str(folder), "disclosure": "#AIgenerated"}, image={"count": 2})
    loaded = load_text(text, "posting-test.yaml", rt.registry)
    first = rt.run(loaded, {})
    assert first.status is RunStatus.SUCCEEDED, first.error
    post_dir, = [p for p in folder.iterdir()]
    assert not post_dir.name.startswith(".")
    doc = json.loads((post_dir / "post.json").read_text())
    assert doc["text"] == "Dawn over the cliffs\n\n#AIgenerated"
    assert [i["file"] for i in doc["images"]] == ["image-1.png", "image-2.png"]
    assert doc["images"][0]["alt"] == f"{CAPTION} (AI-generated image)"
    assert (post_dir / "image-1.png").read_bytes() == artifact_bytes(rt, first, 0)
    assert AI in (post_dir / "image-2.png").read_bytes()
    assert first.steps["post"].outputs["url"] == post_dir.resolve().as_uri()
    # a re-run of this run (e.g. after a later failure) does not write a second folder
    rerun = rt.store.create_run(loaded.name, inputs={"caption": CAPTION}, retry_of=first.run_id)
    Ledger(rt.store)  # the ledger is there; wipe it to prove the folder itself also dedupes
    with rt.store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM posting_ledger")
    second = rt.executor.execute(loaded, rerun, inputs={"caption": CAPTION})
    assert second.status is RunStatus.SUCCEEDED
    assert len(list(folder.iterdir())) == 1


def test_example_workflow_runs_offline(rt):
    result = rt.run(load_file(ROOT / "workflows" / "post-outbox.yaml", rt.registry), {})
    assert result.status is RunStatus.SUCCEEDED, result.error
    folder = Path(result.outputs["post"].removeprefix("file://"))
    assert folder.parent == rt.settings.home / "outbox"
    assert json.loads((folder / "post.json").read_text())["text"].endswith("#AIgenerated")


# -- config, secrets ------------------------------------------------------------------------------

def test_config_problems_are_reported_at_load_time(rt):
    with pytest.raises(WorkflowInvalid) as err:
        load_text(flow({"target": "mastodon", "instance": "https://m.example"}), "bad.yaml", rt.registry)
    assert "needs 'instance' and 'token_secret'" in str(err.value)
    with pytest.raises(WorkflowInvalid) as err:
        load_text(flow({"target": "mastodon", "instance": "https://m.example", "token_secret": "abc-123.xyz"}),
                  "bad.yaml", rt.registry)
    assert "not a secret name" in str(err.value)


def test_missing_secret_names_the_variable(rt, env):
    del env["MASTODON_TOKEN"]
    with FakeMastodon(MTOKEN) as m:
        result = run(rt, flow(mastodon_cfg(m)))
        assert result.status is RunStatus.FAILED and "MASTODON_TOKEN" in result.error["message"]
        assert m.requests == []


def test_no_secret_reaches_store_or_logs(rt, env, caplog):
    caplog.set_level(logging.DEBUG)
    with FakeMastodon(MTOKEN) as m, FakeBluesky(HANDLE, BPASS) as b, FakeWebhooks() as w:
        env["DISCORD_URL"] = f"{w.url}/api/webhooks/9/{HOOK_TOKEN}"
        results = [
            run(rt, flow(mastodon_cfg(m))),
            run(rt, flow(mastodon_cfg(m, dry_run=True))),
            run(rt, flow(bluesky_cfg(b))),
            run(rt, flow(bluesky_cfg(b, dry_run=True))),
            run(rt, flow({"target": "webhook", "flavour": "discord", "url_secret": "DISCORD_URL"})),
            run(rt, flow({"target": "webhook", "flavour": "discord", "url_secret": "DISCORD_URL", "dry_run": True})),
            run(rt, flow({"target": "webhook", "flavour": "n8n", "url": f"{w.url}/webhook/x",
                          "auth_header": "X-Token", "auth_secret": "N8N_TOKEN"})),
        ]
        m.script["statuses"] = [(403, {})]
        w.script["discord"] = [400]
        results.append(run(rt, flow(mastodon_cfg(m, allow_truncate=True))))  # fails: 403
        results.append(run(rt, flow({"target": "webhook", "flavour": "discord", "url_secret": "DISCORD_URL",
                                     "disclosure": "x"})))  # fails: 400
        b.expire_access_tokens()
        results.append(run(rt, flow(bluesky_cfg(b, disclosure="refresh"))))
        jwts = [t for t in list(b.access) + list(b.refresh)]
    assert [r.status.value for r in results] == ["succeeded"] * 7 + ["failed", "failed", "succeeded"]
    secrets = [MTOKEN, BPASS, HOOK_TOKEN, N8N_TOKEN, *jwts]
    db_path = Path(rt.settings.db_url.split("///", 1)[1])
    rt.store.engine.dispose()
    blobs = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    rows = json.dumps([rt.store.get_run(r.run_id) for r in results]) + json.dumps(
        [[e.data for e in rt.store.events(r.run_id)] for r in results])
    rows += json.dumps(Ledger(rt.store).rows(), default=str)
    for secret in secrets:
        assert secret.encode() not in blobs, secret[:8]
        assert secret not in rows, secret[:8]
        assert secret not in caplog.text, secret[:8]
    assert "pixelmill" in caplog.text  # the logs were captured at all


# -- helpers ------------------------------------------------------------------------------------

def test_tid_is_valid_and_deterministic():
    from pixelmill.posting.bluesky import TID_RE, make_tid
    micros = 1_764_000_000_123_456
    tid = make_tid(micros, 513)
    assert TID_RE.match(tid) and tid == make_tid(micros, 513) and tid != make_tid(micros, 514)
    assert make_tid(micros, 0) < make_tid(micros + 1, 0)  # sortable by time


def test_mastodon_counts_urls_as_23_and_graphemes():
    from pixelmill.posting.preflight import mastodon_length
    assert mastodon_length("see https://example.com/" + "a" * 200) == 4 + 23
    assert mastodon_length("hi @someone@mastodon.social") == len("hi @someone")
    assert mastodon_length("e\u0301" * 10) == 10


def test_retry_after_accepts_seconds_and_http_dates():
    from email.utils import formatdate

    from pixelmill.posting.http import retry_after_seconds
    assert retry_after_seconds("7") == 7.0
    now = time.time()
    assert 29 <= retry_after_seconds(formatdate(now + 30, usegmt=True), now=now) <= 31
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_resize_over_pixel_limit_keeps_png_and_label():
    from pixelmill.posting.base import Limits, PostImage
    from pixelmill.posting.preflight import fit_image
    im = Image.new("RGB", (400, 300), (10, 20, 30))
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    buf = io.BytesIO()
    im.save(buf, "PNG", pnginfo=info)
    out = fit_image(PostImage(buf.getvalue(), "image/png", 400, 300, "alt", "a.png"), Limits(max_pixels=30_000))
    assert out.media_type == "image/png" and out.width * out.height <= 30_000
    assert round(out.width / out.height, 2) == round(400 / 300, 2)
    assert AI in out.data and any("resized" in c for c in out.changes)


def test_truncate_keeps_disclosure_and_cuts_at_a_word():
    from pixelmill.posting.preflight import truncate_to
    out = truncate_to("one two three four five six", "\n\n#AI", 20, len)
    assert out == "one two three…\n\n#AI" and len(out) <= 20


def test_mastodon_unconfirmed_post_older_than_idempotency_window_is_not_resent(rt, monkeypatch):
    with FakeMastodon(MTOKEN) as m:
        m.script["statuses"] = ["stall"]
        m.stall_s = 1.0
        loaded = load_text(flow(mastodon_cfg(m, timeout=0.3, retries=0)), "posting-test.yaml", rt.registry)
        first = rt.run(loaded, {})
        assert first.status is RunStatus.FAILED and len(m.statuses) == 1
        with rt.store.engine.begin() as conn:  # the failed attempt was two hours ago
            conn.exec_driver_sql("UPDATE posting_ledger SET updated_at = datetime(updated_at, '-2 hours')")
        m.idempotent.clear()  # and Mastodon forgot the key
        rerun = rt.store.create_run(loaded.name, inputs={"caption": CAPTION}, retry_of=first.run_id)
        second = rt.executor.execute(loaded, rerun, inputs={"caption": CAPTION})
        assert second.status is RunStatus.FAILED
        assert "longer than the platform remembers" in second.error["message"]
        assert len(m.statuses) == 1 and len(m.calls("/api/v1/statuses")) == 1


def test_preflight_and_definitive_refusals_are_not_retried_by_the_step():
    from pixelmill.posting.base import PostingError, PreflightError

    assert PreflightError("mastodon", ["6 images"]).retryable is False
    assert PostingError("unauthorized", status=401).retryable is False
    assert PostingError("slow down", status=429).retryable is True
    assert PostingError("server error", status=503).retryable is True


# -- hardening (issue 9, items 24-28) -------------------------------------------------------------

# One `pixelmill run`-style process: its own runtime, registry and run store, the shared PIXELMILL_HOME.
WORKER = r"""
import json, logging, sys
from pixelmill.loader import load_text
from pixelmill.registry import Registry
from pixelmill.runtime import Runtime
from pixelmill.settings import Settings
from pixelmill_nodes.post_social import PostSocialNode

home, db, text, password = sys.argv[1:5]
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s %(message)s")
reg = Registry()
reg.register(PostSocialNode)
rt = Runtime.create(Settings.from_env(environ={}, home=home, db_url=db), registry=reg,
                    environ={"BSKY_PASSWORD": password})
try:
    res = rt.run(load_text(text, "bluesky.yaml", reg), {})
    print(json.dumps({"status": res.status.value, "error": res.error, "run_id": res.run_id}))
finally:
    rt.close()
"""


def _bluesky_processes(b, tmp_path, n: int, tag: str) -> list[subprocess.CompletedProcess]:
    """``n`` processes at once, each posting one text to the fake PDS; each with its own run store."""
    import sys
    home = tmp_path / "home"
    procs = []
    for i in range(n):
        text = json.dumps({"name": "bluesky-text", "steps": [
            {"id": "post", "node": "post_social", "config": bluesky_cfg(b), "with": {"text": f"{tag} post {i}"}}]})
        db = f"sqlite:///{tmp_path / f'{tag}-{i}.db'}"
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(home), db, text, BPASS],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT))
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def _fresh_clients(b, folder: Path, n: int, tag: str, start: int = 0) -> list[str]:
    """``n`` Bluesky clients built from nothing, as ``n`` separate processes would build them (no shared
    memory: own sessions object, own HTTP session), posting at the same time; the folder is all they share."""
    from concurrent.futures import ThreadPoolExecutor

    from pixelmill.posting.base import Keys, Post
    from pixelmill.posting.bluesky import BlueskySessions, BlueskyTarget, make_tid
    from pixelmill.posting.http import Http, RetryPolicy

    def one(i: int) -> str:
        target = BlueskyTarget(Http("Bluesky", RetryPolicy(backoff=0.01)), BlueskySessions(folder), b.url, HANDLE,
                               lambda: BPASS)
        keys = Keys("k", make_tid(1_764_000_000_000_000 + start + i, 0), f"s{i}")
        return target.send(Post(text=f"{tag} post {i}", images=[]), keys, resume=False).remote_id

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_bluesky_session_is_shared_refreshed_and_created_again_only_when_refresh_fails(tmp_path, caplog):
    """Item 24: 20 fresh clients (20 `pixelmill run` processes) make one createSession, although the
    PDS caps logins at 3 here as a real account's daily limit would; an expired access token is
    refreshed, and only a dead refresh token leads to a new login. The file is private; no token is logged."""
    caplog.set_level(logging.DEBUG)
    folder = tmp_path / "home" / "sessions"
    with FakeBluesky(HANDLE, BPASS) as b:
        b.session_limit = 3
        posted = _fresh_clients(b, folder, 20, "first")
        assert len(set(posted)) == 20 and len(b.records) == 20
        assert b.sessions_created == 1 and b.session_refusals == 0
        saved, = folder.glob("bluesky-*.json")
        assert oct(folder.stat().st_mode & 0o777) == "0o700" and oct(saved.stat().st_mode & 0o777) == "0o600"
        b.expire_access_tokens()
        _fresh_clients(b, folder, 3, "expired", start=100)
        assert b.sessions_created == 1 and b.refreshes == 1
        b.expire_access_tokens()
        b.revoke_refresh_tokens()
        _fresh_clients(b, folder, 3, "revoked", start=200)
        assert b.sessions_created == 2 and b.refreshes == 1 and len(b.records) == 26
        tokens = list(b.access) + list(b.refresh)
    assert "new session for" in caplog.text and "session refreshed" in caplog.text
    for token in tokens:
        assert token not in caplog.text


def test_bluesky_session_is_shared_by_real_processes(tmp_path):
    """Item 24 through the node in separate processes (each its own runtime and run store): one login,
    and no token in their DEBUG logs or their run stores."""
    with FakeBluesky(HANDLE, BPASS) as b:
        b.session_limit = 1
        procs = _bluesky_processes(b, tmp_path, 3, "proc")
        for p in procs:
            assert p.returncode == 0, p.stderr[-2000:]
            assert json.loads(p.stdout)["status"] == "succeeded", p.stdout
        assert b.sessions_created == 1 and len(b.records) == 3
        tokens = list(b.access) + list(b.refresh)
    logs = "".join(p.stderr + p.stdout for p in procs)
    assert "new session for" in logs  # the logs were captured (DEBUG, urllib3 included)
    dbs = b"".join(f.read_bytes() for f in tmp_path.glob("*.db*"))
    for token in tokens:
        assert token not in logs and token.encode() not in dbs


def test_bluesky_session_file_is_reused_in_process_after_restart(rt, tmp_path):
    """A new runtime (a restarted `pixelmill serve`) finds the saved session instead of logging in."""
    with FakeBluesky(HANDLE, BPASS) as b:
        assert run(rt, flow(bluesky_cfg(b))).status is RunStatus.SUCCEEDED
        rt.close()
        again = Runtime.create(Settings.from_env(environ={}, home=tmp_path / "home"),
                               environ={"BSKY_PASSWORD": BPASS})
        again.registry.register(FixtureImage)
        try:
            assert run(again, flow(bluesky_cfg(b))).status is RunStatus.SUCCEEDED
        finally:
            again.close()
        assert b.sessions_created == 1 and len(b.records) == 2


def test_rate_limit_beyond_max_retry_wait_is_not_retried_by_the_step(rt):
    """Item 26: Retry-After 3600 s > max_retry_wait: one request, no step retry, and when to try again."""
    with FakeMastodon(MTOKEN) as m:
        m.script["statuses"] = [(429, {"Retry-After": "3600"})] * 3
        result = run(rt, flow(mastodon_cfg(m, max_retry_wait=5), retry={"max_attempts": 3, "delay": 0}))
        assert result.status is RunStatus.FAILED
        assert len(m.calls("/api/v1/statuses")) == 1 and result.steps["post"].attempts == 1
        msg = result.error["message"]
        assert "Try again after" in msg and "UTC (in 3,600 s)" in msg and "max_retry_wait 5 s" in msg
    with FakeBluesky(HANDLE, BPASS) as b:  # the AT Protocol form: 429 with RateLimit-Reset (Unix seconds)
        b.session_limit = 0
        result = run(rt, flow(bluesky_cfg(b), retry={"max_attempts": 3, "delay": 0}))
        assert result.status is RunStatus.FAILED
        assert len(b.calls("createSession")) == 1 and result.steps["post"].attempts == 1
        assert "RateLimitExceeded" in result.error["message"] and "Try again after" in result.error["message"]


def test_deduplicated_is_true_when_an_earlier_try_posted(rt):
    """Item 27: Mastodon's idempotent replay and Bluesky's getRecord after a timeout count as earlier tries."""
    with FakeMastodon(MTOKEN) as m:
        m.script["statuses"] = ["stall"]
        m.stall_s = 1.0
        within = run(rt, flow(mastodon_cfg(m, timeout=0.3)))  # request-level retry, same key
        m.script["statuses"] = ["stall"]
        step = run(rt, flow(mastodon_cfg(m, timeout=0.3, retries=0), retry={"max_attempts": 2, "delay": 0}))
        assert len(m.statuses) == 2
        for result in (within, step):
            assert result.status is RunStatus.SUCCEEDED, result.error
            assert result.steps["post"].outputs["deduplicated"] is True
    with FakeBluesky(HANDLE, BPASS) as b:
        b.script["com.atproto.repo.createRecord"] = ["stall"]
        b.stall_s = 1.0
        found = run(rt, flow(bluesky_cfg(b, timeout=0.3)))
        assert found.status is RunStatus.SUCCEEDED, found.error
        assert len(b.records) == 1 and found.steps["post"].outputs["deduplicated"] is True


def test_deduplicated_is_false_when_the_retry_made_the_post(rt):
    """The other side of item 27: a retry after a lost request or a 500 made the post itself."""
    with FakeMastodon(MTOKEN) as m:
        m.script["statuses"] = ["lost", 500]  # the first request never reached the app; then a 500
        m.stall_s = 1.0
        result = run(rt, flow(mastodon_cfg(m, timeout=0.3)))
        assert result.status is RunStatus.SUCCEEDED, result.error
        assert len(m.calls("/api/v1/statuses")) == 3 and len(m.statuses) == 1
        assert result.steps["post"].outputs["deduplicated"] is False
    with FakeBluesky(HANDLE, BPASS) as b:
        b.script["com.atproto.repo.createRecord"] = [500]
        result = run(rt, flow(bluesky_cfg(b)))
        assert result.status is RunStatus.SUCCEEDED and result.steps["post"].outputs["deduplicated"] is False


def test_ai_labelled_image_gets_a_default_disclosure_unless_switched_off(rt):
    """Item 28: no `disclosure` configured, the image's own labels say AI-generated: '#AIgenerated'."""
    with FakeMastodon(MTOKEN) as m:
        cfg = mastodon_cfg(m)
        del cfg["disclosure"]
        result = run(rt, flow(cfg))
        assert result.status is RunStatus.SUCCEEDED, result.error
        out = result.steps["post"].outputs
        assert m.calls("/api/v1/statuses")[0].form["status"] == ["Dawn over the cliffs\n\n#AIgenerated"]
        assert out["disclosure"] == "#AIgenerated" and out["unlabelled_images"] == []
        off = run(rt, flow({**cfg, "disclosure": False}))
        assert off.status is RunStatus.SUCCEEDED, off.error
        assert m.calls("/api/v1/statuses")[1].form["status"] == ["Dawn over the cliffs"]
        assert off.steps["post"].outputs["disclosure"] is None


def test_unlabelled_image_is_posted_with_a_warning(rt, caplog):
    """Item 28: an image that never went through label_ai: a warning in the log, a step event and the
    outputs; no AI disclosure is invented for it."""
    caplog.set_level(logging.WARNING, logger="pixelmill")
    with FakeMastodon(MTOKEN) as m:
        cfg = mastodon_cfg(m)
        del cfg["disclosure"]
        result = run(rt, flow(cfg, image={"label": False}))
        assert result.status is RunStatus.SUCCEEDED, result.error
        out = result.steps["post"].outputs
        name = result.steps["img"].outputs["image"]["name"]
        assert out["unlabelled_images"] == [name] and out["disclosure"] is None
        assert any("carry no AI label" in w and "label_ai" in w for w in out["warnings"])
        events = [e.data for e in rt.store.events(result.run_id) if e.step_id == "post"]
        assert any("carry no AI label" in (d.get("message") or "") for d in events)
        assert "carry no AI label" in caplog.text
        assert m.calls("/api/v1/statuses")[0].form["status"] == ["Dawn over the cliffs"]


def test_cli_retry_finishes_an_unconfirmed_post_without_posting_twice(tmp_path):
    """Item 25: the run fails after an unconfirmed delivery; its error says the post may exist and how to
    retry; `pixelmill retry RUN_ID` reuses the ledger (same Idempotency-Key), so one post."""
    import sys
    env = dict(os.environ, PIXELMILL_HOME=str(tmp_path / "home"), MASTODON_TOKEN=MTOKEN)
    env.pop("PYTHONPATH", None)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "pixelmill.cli", *args], env=env, capture_output=True,
                              text=True, cwd=ROOT, timeout=120)

    with FakeMastodon(MTOKEN) as m:
        m.script["statuses"] = ["stall"]
        m.stall_s = 1.0
        wf = tmp_path / "post.yaml"
        wf.write_text(json.dumps({"name": "post-once", "steps": [
            {"id": "post", "node": "post_social", "config": mastodon_cfg(m, timeout=0.3, retries=0),
             "with": {"text": "Dawn over the cliffs"}}]}))
        first = cli("run", str(wf), "--json")
        assert first.returncode == 1, first.stderr
        failed = json.loads(first.stdout)
        msg = failed["error"]["message"]
        assert "may already exist" in msg and f"pixelmill retry {failed['run_id']}" in msg
        assert len(m.statuses) == 1
        calls = len(m.calls("/api/v1/statuses"))
        fresh = cli("run", str(wf), "--json")  # a new run of the same post does not post it again...
        assert fresh.returncode == 1, fresh.stderr
        assert f"pixelmill retry {failed['run_id']}" in json.loads(fresh.stdout)["error"]["message"]
        assert len(m.calls("/api/v1/statuses")) == calls
        again = cli("retry", failed["run_id"], "--json")
        assert again.returncode == 0, again.stderr
        done = json.loads(again.stdout)
        post = done["steps"]["post"]["outputs"]
        assert len(m.statuses) == 1 and post["remote_id"] == m.statuses[0]["id"] and post["deduplicated"] is True
        keys = {c.headers["Idempotency-Key"] for c in m.calls("/api/v1/statuses")}
        assert len(keys) == 1
        stored = RunStore(Settings.from_env(environ={}, home=tmp_path / "home").db_url,
                          tmp_path / "home" / "runs").get_run(done["run_id"])
        assert stored["retry_of"] == failed["run_id"] and stored["trigger_kind"] == "retry"
        refused = cli("retry", done["run_id"])  # a succeeded run is not retried
        assert refused.returncode == 2 and "only failed" in refused.stderr
        assert len(m.statuses) == 1


def test_bluesky_session_file_readable_by_others_is_not_trusted(tmp_path):
    """A session file with group/other permissions is ignored (a new login) and replaced by a 0600 one."""
    folder = tmp_path / "sessions"
    with FakeBluesky(HANDLE, BPASS) as b:
        _fresh_clients(b, folder, 1, "one")
        saved, = folder.glob("bluesky-*.json")
        saved.chmod(0o644)
        _fresh_clients(b, folder, 1, "two", start=10)
        assert b.sessions_created == 2 and oct(saved.stat().st_mode & 0o777) == "0o600"
