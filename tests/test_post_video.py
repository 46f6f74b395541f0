"""post_social with a video: make_video -> label_ai -> post_social through the real executor, against the local
fake Mastodon (asynchronous media processing: 202, 206 polls, 200 or a 422 processing failure; the instance's
limits from GET /api/v2/instance), webhooks and the outbox; pre-flight limits (bytes, pixels, codec, length);
Bluesky (uploadBlob + app.bsky.embed.video); the posting ledger keeps video posts exactly once."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from pixelmill.loader import load_text
from pixelmill.node import ArtifactRef, Model, Node
from pixelmill.posting.ledger import Ledger
from pixelmill.rerun import reused_outputs
from pixelmill.runtime import Runtime
from pixelmill.settings import Settings
from pixelmill.status import RunStatus

from .posting_fakes import FakeBluesky, FakeMastodon, FakeWebhooks
from .test_posting import (
    BPASS,
    HANDLE,
    MTOKEN,
    Boom,
    FixtureImage,
    bluesky_cfg,
    crash_before_first_mark_sent,
    mastodon_cfg,
)

ALT = "four shapes in a row, one after another"


@pytest.fixture
def rt(tmp_path):
    runtime = Runtime.create(Settings.from_env(environ={}, home=tmp_path / "home"),
                             environ={"MASTODON_TOKEN": MTOKEN, "BSKY_PASSWORD": BPASS})
    for node in (FixtureImage, Boom, OddVideo):
        runtime.registry.register(node)
    yield runtime
    runtime.close()


class _CodecConfig(Model):
    codec: str = "mpeg4"


class _VideoOut(Model):
    video: ArtifactRef


class OddVideo(Node):
    """Test-only: an MP4 that is not H.264 (MPEG-4 part 2), as some tools write."""

    type = "fixture_odd_video"
    Config = _CodecConfig
    Outputs = _VideoOut

    def run(self, inputs, ctx):
        import av

        ref, path = ctx.new_artifact("odd.mp4", "video/mp4")
        with av.open(str(path), "w", format="mp4") as c:
            st = c.add_stream(self.config.codec, rate=4)
            st.width, st.height, st.pix_fmt = 64, 48, "yuv420p"
            for i in range(4):
                frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 60 * i, np.uint8), format="rgb24")
                for p in st.encode(frame):
                    c.mux(p)
            for p in st.encode():
                c.mux(p)
        return _VideoOut(video=ref)


def video_flow(config: dict, *, post_with: dict | None = None, retry: dict | None = None, after: bool = False,
               label: bool = True, size: tuple[int, int] = (96, 64)) -> str:
    """Three images -> make_video (4 fps, 0.5 s each: 6 frames) -> label_ai (video) -> post_social."""
    steps = [{"id": "img", "node": "fixture_image", "config": {"count": 3, "width": size[0], "height": size[1]}},
             {"id": "video", "node": "make_video", "config": {"fps": 4},
              "with": {"images": "${{ steps.img.outputs.images }}", "seconds_per_image": 0.5,
                       "transition": "none"}}]
    source = "${{ steps.video.outputs.video }}"
    if label:
        steps.append({"id": "label", "node": "label_ai", "config": {"watermark": False},
                      "with": {"video": source, "prompt": "three shapes"}})
        source = "${{ steps.label.outputs.video }}"
    post = {"id": "post", "node": "post_social", "config": config,
            "with": post_with or {"text": "A short film", "video": source, "alt_text": ALT}}
    if retry:
        post["retry"] = retry
    steps.append(post)
    if after:
        steps.append({"id": "after", "node": "boom", "needs": ["post"]})
    return json.dumps({"name": "video-post", "steps": steps})


def go(rt, text):
    return rt.run(load_text(text, "video-post.yaml", rt.registry), {})


def artifact(rt, result, step="label", output="video") -> bytes:
    ref = result.steps[step].outputs[output]
    return (rt.store.artifacts_root / ref["run_id"] / ref["name"]).read_bytes()


def test_mastodon_video_is_uploaded_polled_until_processed_then_posted(rt):
    with FakeMastodon(MTOKEN, video_polls=2) as m:
        result = go(rt, video_flow(mastodon_cfg(m)))
        assert result.status is RunStatus.SUCCEEDED, result.error
        assert [(r.method, r.path) for r in m.requests] == [
            ("GET", "/api/v2/instance"),  # the instance's own media limits first (public, no token)
            ("POST", "/api/v2/media"),  # 202, url null
            ("GET", "/api/v1/media/100"), ("GET", "/api/v1/media/100"),  # 206, 206
            ("GET", "/api/v1/media/100"),  # 200 with the url
            ("POST", "/api/v1/statuses")]
        assert "Authorization" not in m.requests[0].headers
        upload, status = m.requests[1], m.requests[-1]
        name, ctype, data = upload.files["file"]
        assert ctype == "video/mp4" and name.endswith(".mp4")
        assert data == artifact(rt, result)  # the labelled MP4, byte for byte
        assert upload.form["description"] == [f"{ALT} (AI-generated video)"]
        # the label travels: label_ai's XMP says AI, so the default disclosure goes into the text
        assert status.form["status"] == ["A short film\n\n#AIgenerated"] and status.form["media_ids[]"] == ["100"]
        (attachment,) = m.statuses[0]["media_attachments"]
        assert attachment["type"] == "video" and attachment["meta"]["original"]["frames"] == 6
        out = result.steps["post"].outputs
        assert (out["videos"], out["images"], out["state"]) == (1, 0, "sent") and out["unlabelled_images"] == []
        row, = Ledger(rt.store).rows()
        assert row["state"] == "sent" and row["remote_id"] == m.statuses[0]["id"]


def test_mastodon_failed_video_processing_fails_the_step_once_with_the_platform_message(rt):
    with FakeMastodon(MTOKEN, video_polls=1) as m:
        m.fail_processing = True
        result = go(rt, video_flow(mastodon_cfg(m), retry={"max_attempts": 3, "delay": 0}))
        assert result.status is RunStatus.FAILED
        message = result.error["message"]
        assert "could not process" in message and "Error processing thumbnail for uploaded media" in message
        assert "HTTP 422" in message
        assert len(m.calls("/api/v2/media")) == 1  # a refusal: the step is not retried
        assert m.calls("/api/v1/statuses") == [] and m.statuses == []
        row, = Ledger(rt.store).rows()
        assert row["state"] == "failed"


def test_mastodon_video_over_the_instance_limits_is_refused_before_upload(rt):
    with FakeMastodon(MTOKEN) as m:
        m.instance_config["media_attachments"]["video_size_limit"] = 2000  # bytes
        result = go(rt, video_flow(mastodon_cfg(m)))
        assert result.status is RunStatus.FAILED
        assert "pre-flight check for Mastodon failed (nothing was sent)" in result.error["message"]
        assert "over the 0.0 MB limit for Mastodon" in result.error["message"]
        m.instance_config["media_attachments"]["video_size_limit"] = 103809024
        m.instance_config["media_attachments"]["video_matrix_limit"] = 64 * 64  # the video is 96x64
        result = go(rt, video_flow(mastodon_cfg(m)))
        assert "96x64, over the 4,096-pixel limit for Mastodon" in result.error["message"]
        m.instance_config["media_attachments"]["supported_mime_types"] = ["image/png", "image/jpeg"]
        result = go(rt, video_flow(mastodon_cfg(m)))
        assert "takes no videos on this instance" in result.error["message"]
        assert m.calls("/api/v2/media") == [] and m.statuses == []


def test_mastodon_video_length_codec_and_mixing_are_checked_before_any_upload(rt):
    with FakeMastodon(MTOKEN) as m:
        long = go(rt, video_flow(mastodon_cfg(m, max_video_seconds=1.0)))  # the video lasts 1.5 s
        assert "lasts 1.5 s, over the 1 s limit for Mastodon" in long.error["message"]
        odd = json.dumps({"name": "odd", "steps": [
            {"id": "v", "node": "fixture_odd_video"},
            {"id": "post", "node": "post_social", "config": mastodon_cfg(m),
             "with": {"text": "odd", "video": "${{ steps.v.outputs.video }}", "alt_text": ALT}}]})
        result = go(rt, odd)
        assert "is mpeg4, not h264 for Mastodon: encode it with make_video format 'mp4'" in result.error["message"]
        mixed = video_flow(mastodon_cfg(m), post_with={
            "text": "both", "video": "${{ steps.label.outputs.video }}", "images": "${{ steps.img.outputs.images }}",
            "alt_text": [ALT] * 4})
        result = go(rt, mixed)
        assert "Mastodon cannot attach a video to a post that has images" in result.error["message"]
        assert m.calls("/api/v2/media") == [] and m.statuses == []


def test_mastodon_instance_limits_unreadable_falls_back_to_defaults_with_a_warning(rt):
    with FakeMastodon(MTOKEN) as m:
        m.instance_status = 401  # a server that requires a login for /api/v2/instance
        result = go(rt, video_flow(mastodon_cfg(m)))
        assert result.status is RunStatus.SUCCEEDED, result.error
        warnings = result.steps["post"].outputs["warnings"]
        assert any("could not read the instance's media limits" in w for w in warnings)
        assert len(m.statuses) == 1


def test_mastodon_video_post_is_exactly_once_across_a_timeout_and_a_crash(rt, monkeypatch):
    with FakeMastodon(MTOKEN) as m:  # the status is made, the answer comes too late: the step's retry resumes
        m.script["statuses"] = ["stall"]
        m.stall_s = 1.0
        result = go(rt, video_flow(mastodon_cfg(m, timeout=0.3, retries=0), retry={"max_attempts": 2, "delay": 0}))
        assert result.status is RunStatus.SUCCEEDED, result.error
        calls = m.calls("/api/v1/statuses")
        assert len(calls) == 2 and calls[0].headers["Idempotency-Key"] == calls[1].headers["Idempotency-Key"]
        assert len(m.statuses) == 1 and result.steps["post"].outputs["deduplicated"] is True

    crash_before_first_mark_sent(monkeypatch)
    # posted, then the process died before the ledger said so: retry the run as `pixelmill retry` does (the
    # steps that succeeded are reused, so the labelled video is the same file)
    with FakeMastodon(MTOKEN) as m:
        loaded = load_text(video_flow(mastodon_cfg(m)), "video-post.yaml", rt.registry)
        first = rt.run(loaded, {})
        assert first.status is RunStatus.FAILED and len(m.statuses) == 1
        rerun = rt.store.create_run(loaded.name, inputs={}, retry_of=first.run_id)
        second = rt.executor.execute(loaded, rerun, inputs={}, reuse=reused_outputs(rt.store, first.run_id, loaded))
        assert second.status is RunStatus.SUCCEEDED, second.error
        assert len(m.statuses) == 1 and second.steps["post"].outputs["remote_id"] == m.statuses[0]["id"]
        # and a re-run of a run whose post went through sends nothing at all
        loaded = load_text(video_flow(mastodon_cfg(m), after=True), "video-post.yaml", rt.registry)
        first = rt.run(loaded, {})
        n = len(m.requests)
        rerun = rt.store.create_run(loaded.name, inputs={}, retry_of=first.run_id)
        second = rt.executor.execute(loaded, rerun, inputs={}, reuse=reused_outputs(rt.store, first.run_id, loaded))
        assert second.status is RunStatus.FAILED and second.steps["post"].status.value == "succeeded"
        assert len(m.requests) == n and len(m.statuses) == 2


def test_bluesky_video_is_a_blob_in_an_embed_video_record(rt):
    with FakeBluesky(HANDLE, BPASS) as b:
        result = go(rt, video_flow(bluesky_cfg(b)))
        assert result.status is RunStatus.SUCCEEDED, result.error
        assert [r.path for r in b.requests] == ["/xrpc/com.atproto.server.createSession",
                                                "/xrpc/com.atproto.repo.uploadBlob",
                                                "/xrpc/com.atproto.repo.createRecord"]
        upload, create = b.requests[1], b.requests[2]
        assert upload.headers["Content-Type"] == "video/mp4" and upload.body == artifact(rt, result)
        record = create.json["record"]
        assert record["text"] == "A short film\n\n#AIgenerated"
        embed = record["embed"]
        assert embed["$type"] == "app.bsky.embed.video" and embed["aspectRatio"] == {"width": 96, "height": 64}
        assert embed["alt"] == f"{ALT} (AI-generated video)"
        assert embed["video"]["mimeType"] == "video/mp4" and embed["video"]["size"] == len(upload.body)
        (stored,) = b.records.values()
        assert stored["value"]["embed"]["video"]["ref"] == embed["video"]["ref"]
        assert result.steps["post"].outputs["videos"] == 1


def test_bluesky_video_limits_are_checked_before_any_request(rt):
    with FakeBluesky(HANDLE, BPASS) as b:
        long_alt = video_flow(bluesky_cfg(b), post_with={
            "text": "x", "video": "${{ steps.label.outputs.video }}", "alt_text": "word " * 250})
        result = go(rt, long_alt)  # 1,270 with the suffix: images take 2,000, a video's alt text 1,000
        assert "alt text is 1270 characters, Bluesky allows 1000" in result.error["message"]
        mixed = video_flow(bluesky_cfg(b), post_with={
            "text": "both", "video": "${{ steps.label.outputs.video }}", "images": "${{ steps.img.outputs.images }}",
            "alt_text": [ALT] * 4})
        result = go(rt, mixed)
        assert "Bluesky cannot attach a video to a post that has images" in result.error["message"]
        assert b.requests == []


def test_outbox_gets_the_video_file_and_post_json(rt, tmp_path):
    folder = tmp_path / "outbox"
    result = go(rt, video_flow({"target": "outbox", "folder": str(folder)}))
    assert result.status is RunStatus.SUCCEEDED, result.error
    (post,) = [p for p in folder.iterdir() if not p.name.startswith(".")]
    assert sorted(p.name for p in post.iterdir()) == ["post.json", "video-1.mp4"]
    assert (post / "video-1.mp4").read_bytes() == artifact(rt, result)
    doc = json.loads((post / "post.json").read_text())
    assert doc["images"] == [] and doc["text"] == "A short film\n\n#AIgenerated"
    (video,) = doc["videos"]
    assert video["media_type"] == "video/mp4" and video["duration_s"] == pytest.approx(1.5)
    assert (video["width"], video["height"]) == (96, 64) and video["alt"].endswith("(AI-generated video)")
    again = go(rt, video_flow({"target": "outbox", "folder": str(folder)}))  # a new run: a new post
    assert again.status is RunStatus.SUCCEEDED and len([p for p in folder.iterdir()]) == 2


def test_webhooks_carry_the_video(rt):
    with FakeWebhooks() as w:
        result = go(rt, video_flow({"target": "webhook", "flavour": "n8n", "url": f"{w.url}/webhook/films"}))
        assert result.status is RunStatus.SUCCEEDED, result.error
        (msg,) = w.messages
        assert msg.json["images"] == [] and msg.headers["Idempotency-Key"].startswith("pixelmill-")
        (video,) = msg.json["videos"]
        assert base64.b64decode(video["data_base64"]) == artifact(rt, result)
        assert video["media_type"] == "video/mp4" and video["duration_s"] == pytest.approx(1.5)
        result = go(rt, video_flow({"target": "webhook", "flavour": "discord", "url": f"{w.url}/api/webhooks/1/tok"}))
        assert result.status is RunStatus.SUCCEEDED, result.error
        discord = w.messages[-1]
        (name, ctype, data), = discord.files.values()
        assert ctype == "video/mp4" and data == artifact(rt, result)
        result = go(rt, video_flow({"target": "webhook", "flavour": "slack", "url": f"{w.url}/services/T/B/x"}))
        assert result.status is RunStatus.FAILED and "put a link to the video in the text" in result.error["message"]


def test_an_unlabelled_video_is_posted_with_a_warning(rt, tmp_path):
    result = go(rt, video_flow({"target": "outbox", "folder": str(tmp_path / "o")}, label=False))
    assert result.status is RunStatus.SUCCEEDED, result.error
    out = result.steps["post"].outputs
    assert out["unlabelled_images"] and out["disclosure"] is None
    assert any("carry no AI label" in w for w in out["warnings"])


def test_mastodon_video_dry_run_reads_the_limits_and_sends_nothing_else(rt):
    with FakeMastodon(MTOKEN) as m:
        result = go(rt, video_flow(mastodon_cfg(m, dry_run=True)))
        assert result.status is RunStatus.SUCCEEDED, result.error
        assert [(r.method, r.path) for r in m.requests] == [("GET", "/api/v2/instance")]
        upload, status = result.steps["post"].outputs["request"]
        assert "video/mp4" in upload["multipart"]["file"] and "206" in upload["then"]
        assert status["form"][0] == ["status", "A short film\n\n#AIgenerated"]
        assert result.steps["post"].outputs["state"] == "dry_run"
