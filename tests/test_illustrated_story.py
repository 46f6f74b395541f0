"""workflows/illustrated-story.yaml end to end against the local OpenAI-compatible server (tests/openai_fake.py)
and the embedded image and caption models: story as JSON (repaired once), for_each moderation and drawing,
captions, slideshow MP4, label_ai on the MP4, the MP4 posted to the outbox."""

from __future__ import annotations

import json
from pathlib import Path

from pixelmill.labels.inspect import inspect_file
from pixelmill.loader import load_text
from pixelmill.status import RunStatus
from pixelmill.video.encode import probe

from .openai_fake import FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent
STORY = {"title": "The keeper and the storm", "scenes": [
    {"text": "The keeper lights the lamp.", "prompt": "a small yellow circle on a black background"},
    {"text": "A storm comes over the sea.", "prompt": "a large purple square on a blue background"},
    {"text": "A ship sees the light.", "prompt": "a small white triangle on a blue background"},
    {"text": "Morning, and all are safe.", "prompt": "a large orange circle on a yellow background"}]}


def test_illustrated_story_runs_end_to_end(runtime):
    text = (ROOT / "workflows" / "illustrated-story.yaml").read_text()
    with FakeOpenAI(models=["llama3.2"]) as srv:
        srv.reply(json.dumps({**STORY, "scenes": STORY["scenes"][:3]}))  # three scenes: repaired
        srv.reply(json.dumps(STORY))
        wf = load_text(text.replace("http://localhost:11434/v1", srv.base_url), "illustrated-story.yaml",
                       runtime.registry)
        result = runtime.run(wf, {"topic": "a lighthouse keeper"})
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.outputs["title"] == STORY["title"] and result.outputs["scenes"] == STORY["scenes"]
    first, second = srv.chat_requests()
    assert first["body"]["messages"][-1]["content"] == "Write a story in exactly four scenes about a lighthouse keeper."
    assert "is too short" in second["body"]["messages"][-1]["content"]  # 3 scenes, minItems 4
    # each scene went through moderation (one item per scene) and was drawn (one item per scene)
    run = runtime.store.get_run(result.run_id)
    items = {s["step_id"] for s in run["steps"]}
    assert {f"check[{i}]" for i in range(4)} <= items and {f"draw[{i}]" for i in range(4)} <= items
    # the labelled MP4: H.264 yuv420p, four scenes of 2 s at 12 fps, labelled AI-generated in XMP and MP4 tags
    video = result.outputs["video"]
    path = runtime.settings.home / "runs" / video["run_id"] / video["name"]
    info = probe(path)
    assert (info["codec"], info["pix_fmt"], info["width"], info["height"]) == ("h264", "yuv420p", 256, 256)
    assert info["frames"] == 4 * 24 and info["fps"] == 12
    assert result.outputs["labels"][:3] == ["badge", "xmp", "mp4_tags"]
    report = inspect_file(path)
    assert report["labelled_ai"] and report["xmp"]["badge"] == "AI-generated"
    assert report["parameters"]["xmp"]["prompt"] == " / ".join(s["prompt"] for s in STORY["scenes"])
    # posted to the outbox: the labelled MP4 itself, the title, the disclosure, BLIP's captions as alt text
    folder = next((runtime.settings.home / "outbox").rglob("post.json")).parent
    post = json.loads((folder / "post.json").read_text())
    assert post["text"] == STORY["title"] + "\n\n#AIgenerated" and post["images"] == []
    (posted,) = post["videos"]
    assert (folder / posted["file"]).read_bytes() == path.read_bytes()
    captions = [t for t in _captions(runtime, result.run_id)]
    assert len(captions) == 4 and posted["alt"] == "; ".join(captions) + " (AI-generated video)"


def _captions(runtime, run_id):
    (step,) = [s for s in runtime.store.get_run(run_id)["steps"] if s["step_id"] == "caption"]
    return step["outputs"]["texts"]


def test_a_scene_that_fails_moderation_blocks_the_story_before_anything_is_drawn(runtime):
    text = (ROOT / "workflows" / "illustrated-story.yaml").read_text()
    bad = json.loads(json.dumps(STORY))
    bad["scenes"][2]["text"] = "The crowd chants white power."
    with FakeOpenAI(models=["llama3.2"]) as srv:
        srv.reply(json.dumps(bad))
        wf = load_text(text.replace("http://localhost:11434/v1", srv.base_url), "illustrated-story.yaml",
                       runtime.registry)
        result = runtime.run(wf, {"topic": "a rally"})
    assert result.status is RunStatus.BLOCKED, result.error
    assert result.error["step_id"].startswith("check") and "scene" in result.error["message"]
    ran = {s["step_id"]: s["status"] for s in runtime.store.get_run(result.run_id)["steps"]}
    assert ran["check[2]"] == "blocked"
    assert not any(sid.startswith(("draw", "video", "label", "post")) and status == "succeeded"
                   for sid, status in ran.items())
    assert not (runtime.settings.home / "outbox").exists()
