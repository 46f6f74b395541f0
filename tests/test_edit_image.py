"""edit_image with the embedded model: inpainting stays inside its mask, outpainting sizes, img2img, masks."""

from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("PIXELMILL_ALLOW_DOWNLOADS", None)

import pytest  # noqa: E402

pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from PIL import Image  # noqa: E402

from pixelmill.loader import load_text  # noqa: E402
from pixelmill.status import RunStatus  # noqa: E402

from .conftest import dedent  # noqa: E402
from .imagenodes import MakeImage  # noqa: E402

FAR_MAX_DIFF = 2  # 0..255: pixels this far from the mask are the original ones
INSIDE_MIN_MEAN_DIFF = 20  # 0..255: the masked area was repainted, not kept


@pytest.fixture(autouse=True)
def _nodes(registry):
    registry.register(MakeImage)


def run(runtime, with_: str, make: str = "{color: '#c03020', width: 64, height: 64, marker: '#2040e0'}"):
    result = runtime.run(load_text(dedent(f"""
        name: wf
        steps:
          - {{id: src, node: t_make_image, with: {make}}}
          - id: edit
            node: edit_image
            config: {{model: embedded, device: cpu}}
            with:
              image: ${{{{ steps.src.outputs.image }}}}
              prompt: a large yellow circle on a green background
              steps: 6
              seed: 7
        {with_}
        """), "wf.yaml", runtime.registry))
    return result


def pixels(runtime, ref) -> np.ndarray:
    with Image.open(runtime.store.artifacts_root / ref["run_id"] / ref["name"]) as img:
        return np.asarray(img.convert("RGB"), dtype=np.int16)


def test_inpainting_changes_the_mask_and_keeps_pixels_far_from_it(runtime):
    result = run(runtime, """
              mode: inpaint
              rect: {left: 24, top: 24, width: 16, height: 16}
    """)
    assert result.status is RunStatus.SUCCEEDED, result.error
    out = result.steps["edit"].outputs
    before, after = pixels(runtime, out["edited_from"]), pixels(runtime, out["image"])
    assert before.shape == after.shape == (64, 64, 3)
    diff = np.abs(after - before).max(axis=2)
    inside = diff[24:40, 24:40].mean()
    far = np.ones((64, 64), bool)
    far[24 - 8:40 + 8, 24 - 8:40 + 8] = False  # 8 px margin: twice the default feather
    print(f"inpaint: mean change inside the mask {inside:.1f}, max change far from it {diff[far].max()}")
    assert inside >= INSIDE_MIN_MEAN_DIFF
    assert diff[far].max() <= FAR_MAX_DIFF
    meta = json.loads(Image.open(runtime.store.artifacts_root / out["image"]["run_id"] / out["image"]["name"])
                      .text["pixelmill"])
    assert meta["edited_from"] == {"run_id": out["edited_from"]["run_id"], "name": out["edited_from"]["name"]}
    assert meta["edit"] == "inpaint" and out["mode"] == "inpaint"


def test_inpainting_from_the_alpha_channel(runtime):
    result = run(runtime, """
              mode: inpaint
              mask_from_alpha: true
    """, make="{color: '#c03020', width: 64, height: 64, alpha_hole: true}")
    assert result.status is RunStatus.SUCCEEDED, result.error
    after = pixels(runtime, result.steps["edit"].outputs["image"])
    assert np.abs(after[0:8, 0:8] - np.array([0xc0, 0x30, 0x20])).max() <= FAR_MAX_DIFF  # opaque corner kept


def test_outpainting_extends_the_canvas_and_keeps_the_original(runtime):
    result = run(runtime, """
              mode: outpaint
              extend: {right: 16, bottom: 8}
    """, make="{color: '#c03020', width: 32, height: 32, marker: '#2040e0'}")
    assert result.status is RunStatus.SUCCEEDED, result.error
    out = result.steps["edit"].outputs
    assert (out["width"], out["height"]) == (48, 40)
    after = pixels(runtime, out["image"])
    assert after.shape == (40, 48, 3)
    assert np.abs(after[0:6, 0:6] - np.array([0x20, 0x40, 0xe0])).max() <= FAR_MAX_DIFF  # the marker stays


def test_img2img_changes_the_whole_image_at_the_same_size(runtime):
    result = run(runtime, "      strength: 0.8\n")
    assert result.status is RunStatus.SUCCEEDED, result.error
    a = result.steps["edit"].outputs
    before, after = pixels(runtime, a["edited_from"]), pixels(runtime, a["image"])
    assert np.abs(after - before).mean() > 5
    assert a["seed"] == 7 and a["strength"] == 0.8


def test_inpaint_without_a_mask_fails_clearly(runtime):
    result = run(runtime, "      mode: inpaint\n")
    assert result.status is RunStatus.FAILED
    assert "inpaint needs exactly one of 'mask', 'mask_from_alpha: true' or 'rect'" in result.error["message"]
