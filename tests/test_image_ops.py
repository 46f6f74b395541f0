"""image_ops: each op measured on real pixels, grid of for_each outputs, formats, clear errors."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from pixelmill.loader import load_text
from pixelmill.problems import WorkflowInvalid
from pixelmill.status import RunStatus

from .conftest import dedent
from .imagenodes import MakeImage


@pytest.fixture(autouse=True)
def _nodes(registry):
    registry.register(MakeImage)


def run(runtime, text, inputs=None):
    return runtime.run(load_text(dedent(text), "wf.yaml", runtime.registry), inputs)


def opened(runtime, ref) -> Image.Image:
    return Image.open(runtime.store.artifacts_root / ref["run_id"] / ref["name"])


def ops_result(runtime, ops: str, fmt: str = "png", **make):
    args = ", ".join(f"{k}: '{v}'" if isinstance(v, str) else f"{k}: {v}" for k, v in make.items())
    result = run(runtime, f"""
        name: wf
        steps:
          - {{id: src, node: t_make_image, with: {{marker: '#00ff00', {args}}}}}
          - id: edit
            node: image_ops
            with:
              image: ${{{{ steps.src.outputs.image }}}}
              format: {fmt}
              ops: {ops}
        """)
    assert result.status is RunStatus.SUCCEEDED, result.error
    return result.steps["edit"].outputs


def test_resize_contain_cover_stretch(runtime):
    assert ops_result(runtime, "[{op: resize, width: 32}]")["height"] == 24  # 64x48 keeps its aspect
    out = ops_result(runtime, "[{op: resize, width: 30, height: 30, fit: cover}]")
    assert (out["width"], out["height"]) == (30, 30)
    out = ops_result(runtime, "[{op: resize, width: 30, height: 30}]")
    assert (out["width"], out["height"]) == (30, 22)
    out = ops_result(runtime, "[{op: resize, width: 10, height: 90, fit: stretch}]")
    assert opened(runtime, out["image"]).size == (10, 90)


def test_crop_pad_rotate_flip_move_the_marker(runtime):
    out = ops_result(runtime, "[{op: crop, left: 4, top: 4, width: 20, height: 10}]")
    img = opened(runtime, out["image"]).convert("RGB")
    assert img.size == (20, 10) and img.getpixel((0, 0)) == (0, 255, 0) and img.getpixel((5, 5)) == (255, 0, 0)
    out = ops_result(runtime, "[{op: pad, left: 10, top: 5, color: '#0000ff'}]")
    img = opened(runtime, out["image"]).convert("RGB")
    assert img.size == (74, 53) and img.getpixel((0, 0)) == (0, 0, 255) and img.getpixel((10, 5)) == (0, 255, 0)
    out = ops_result(runtime, "[{op: flip, direction: horizontal}]")
    img = opened(runtime, out["image"]).convert("RGB")
    assert img.getpixel((63, 0)) == (0, 255, 0) and img.getpixel((0, 0)) == (255, 0, 0)
    out = ops_result(runtime, "[{op: rotate, degrees: 90}]")
    img = opened(runtime, out["image"]).convert("RGB")
    assert img.size == (48, 64) and img.getpixel((1, 62)) == (0, 255, 0)  # top-left went to bottom-left


def test_caption_bar_adds_height_and_draws_text(runtime):
    out = ops_result(runtime, "[{op: caption, text: 'Hello world', size: 14, background: '#000000'}]",
                     width=160, height=40)
    img = opened(runtime, out["image"]).convert("RGB")
    assert img.width == 160 and img.height > 40 + 14
    bar = img.crop((0, 40, 160, img.height))
    assert bar.getextrema()[0][1] > 200  # white text pixels on the black bar


def test_formats_and_quality(runtime):
    out = ops_result(runtime, "[]", fmt="jpeg")
    assert out["image"]["media_type"] == "image/jpeg" and out["image"]["name"].endswith(".jpg")
    assert opened(runtime, out["image"]).format == "JPEG"
    out = ops_result(runtime, "[]", fmt="webp")
    assert opened(runtime, out["image"]).format == "WEBP"
    png = ops_result(runtime, "[{op: flip}]")
    meta = json.loads(opened(runtime, png["image"]).text["pixelmill"])
    assert meta["derived_from"][0]["name"].startswith("src-")


def test_grid_of_for_each_images(runtime):
    result = run(runtime, """
        name: wf
        steps:
          - id: tiles
            node: t_make_image
            for_each: ${{ ['#ff0000', '#00ff00', '#0000ff', '#ffffff'] }}
            max_parallel: 2
            with: {color: "${{ item }}", width: 20, height: 20}
          - id: sheet
            node: image_ops
            with:
              images: ${{ steps.tiles.outputs.image }}
              ops: [{op: grid, columns: 2, gap: 2, color: '#000000'}, {op: caption, text: four, size: 10}]
        """)
    assert result.status is RunStatus.SUCCEEDED, result.error
    img = opened(runtime, result.steps["sheet"].outputs["image"]).convert("RGB")
    assert img.width == 42 and img.height > 42
    assert [img.getpixel(p) for p in ((5, 5), (30, 5), (5, 30), (30, 30))] == \
        [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
    assert img.getpixel((21, 5)) == (0, 0, 0)  # the gap


def test_bad_ops_are_reported_at_load_and_at_run(runtime):
    with pytest.raises(WorkflowInvalid) as err:
        load_text(dedent("""
            name: wf
            steps:
              - id: edit
                node: image_ops
                with: {ops: [{op: twirl}]}
            """), "wf.yaml", runtime.registry)
    assert any("twirl" in p.message or "op" in p.message for p in err.value.problems)
    result = run(runtime, """
        name: wf
        steps:
          - {id: src, node: t_make_image}
          - id: edit
            node: image_ops
            with: {image: "${{ steps.src.outputs.image }}", ops: [{op: crop, left: 60, width: 20, height: 5}]}
        """)
    assert result.status is RunStatus.FAILED
    assert "goes outside the 64x48 image" in result.error["message"]
    assert result.steps["edit"].attempts == 1  # not retried
