"""workflows/illustrated-story.yaml end to end against the local OpenAI-compatible server (tests/openai_fake.py)
and the embedded image and caption models."""

from __future__ import annotations

import json
from pathlib import Path

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
    video = result.outputs["video"]
    info = probe(runtime.settings.home / "runs" / video["run_id"] / video["name"])
    assert (info["codec"], info["pix_fmt"], info["width"], info["height"]) == ("h264", "yuv420p", 256, 256)
    assert info["frames"] == 4 * 24 and info["fps"] == 12
    post = json.loads(next((runtime.settings.home / "outbox").rglob("post.json")).read_text())
    assert STORY["title"] in json.dumps(post)
