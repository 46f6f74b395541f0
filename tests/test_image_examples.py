"""The image examples run: carousel posts four images in one Mastodon post; photo-remix edits an upload."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("PIXELMILL_ALLOW_DOWNLOADS", None)

import pytest  # noqa: E402

pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from pixelmill.loader import load_text  # noqa: E402
from pixelmill.status import RunStatus  # noqa: E402

from .posting_fakes import FakeMastodon  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "mastodon-token-for-carousel-0123456789"


def test_carousel_posts_four_images_in_one_post(runtime, monkeypatch):
    monkeypatch.setenv("MASTODON_TOKEN", TOKEN)
    text = (ROOT / "workflows" / "carousel.yaml").read_text()
    with FakeMastodon(TOKEN, processing_polls=0) as m:
        text = text.replace("https://mastodon.example", m.url).replace(
            "visibility: unlisted", "visibility: unlisted\n      poll_interval: 0.01")
        result = runtime.run(load_text(text, "carousel.yaml", runtime.registry))
        assert result.status is RunStatus.SUCCEEDED, result.error
        assert len(m.statuses) == 1  # one post ...
        status = m.statuses[0]
        assert len(status["media_attachments"]) == 4  # ... with four images
        uploads = [r for r in m.requests if r.method == "POST" and r.path == "/api/v2/media"]
        assert len(uploads) == 4
        prompts = json.loads(json.dumps(runtime.store.get_run(result.run_id)["inputs"]["prompts"]))
        assert [u.form["description"][0] for u in uploads] == [f"{p} (AI-generated image)" for p in prompts]
    gen = result.steps["gen"].outputs
    assert len(gen["image"]) == 4 and gen["seed"] == [11, 12, 13, 14]
    assert len(set(i["name"] for i in result.steps["label"].outputs["image"])) == 4
    assert result.outputs["images"] == 4


def test_photo_remix_edits_an_uploaded_photo_and_labels_it_as_an_edit(runtime):
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), "#3366cc").save(buf, format="JPEG")
    photo = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    wf = load_text((ROOT / "workflows" / "photo-remix.yaml").read_text(), "photo-remix.yaml", runtime.registry)
    result = runtime.run(wf, {"photo": photo, "prompt": "a large yellow circle on a green background"})
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.steps["edit"].outputs["edited_from"]["name"].startswith("fit-")
    assert result.outputs["source_type"].endswith("compositeWithTrainedAlgorithmicMedia")
    assert runtime.store.get_run(result.run_id)["inputs"]["photo"]["name"] == "input-photo.jpg"
