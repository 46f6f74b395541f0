"""The bundled main job runs offline end to end: prompt, moderate, generate, caption, label, post."""

from __future__ import annotations

import json
from pathlib import Path

from pixelmill.labels.inspect import inspect_file
from pixelmill.loader import load_file
from pixelmill.status import RunStatus

ROOT = Path(__file__).resolve().parents[1]


def test_daily_shapes_runs_offline_and_posts_a_labelled_image(runtime):
    wf = load_file(ROOT / "workflows" / "daily-shapes.yaml", runtime.registry)
    result = runtime.run(wf, {"seed": 5})
    assert result.status is RunStatus.SUCCEEDED, result.error
    out = result.outputs
    assert out["seed"] == 5 and out["prompt"].startswith("a ")
    assert out["caption"] and {"badge", "xmp", "parameters", "watermark"} <= set(out["labels"])
    labelled = runtime.store.artifacts_root / out["image"]["run_id"] / out["image"]["name"]
    report = inspect_file(labelled)
    assert report["labelled_ai"] and report["watermark"]["found"]
    assert report["source_type"].endswith("/trainedAlgorithmicMedia")
    post_dir = Path(out["post"].removeprefix("file://"))
    post = json.loads((post_dir / "post.json").read_text())
    assert out["caption"] in post["text"] and "#AIgenerated" in post["text"]
    assert len(list(post_dir.glob("image-*"))) == 1
    assert post["images"][0]["alt"] == f"{out['caption']} (AI-generated image)"
    assert inspect_file(post_dir / post["images"][0]["file"])["labelled_ai"]  # the labelled image is posted
