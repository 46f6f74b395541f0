"""make_video: slideshow MP4 checked by decoding it (h264, yuv420p, frames, fps), GIF/WebP, morph frames
through the embedded model (close neighbours, ends equal to generate_image's images), video-model errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pixelmill.models.locate import ModelNotAvailable, embedded_path
from pixelmill.node import ArtifactRef, Services
from pixelmill.testing import make_context
from pixelmill.video.encode import probe
from pixelmill_nodes.generate_image import GenerateImageNode
from pixelmill_nodes.make_video import MakeVideoNode

COLORS = [(200, 30, 30), (30, 160, 40), (40, 60, 220)]


def images(ctx, size=(66, 50)):
    refs = []
    for i, color in enumerate(COLORS):
        im = Image.new("RGB", size, color)
        ImageDraw.Draw(im).ellipse((10 + 8 * i, 10, 40 + 8 * i, 40), fill=(255, 255, 255))
        ref, path = ctx.new_artifact("in.png", "image/png")
        im.save(path)
        refs.append(ref)
    return refs


def make(ctx, config=None, **inputs):
    node = MakeVideoNode(MakeVideoNode.Config.model_validate(config or {}))
    out = node.run(MakeVideoNode.Inputs.model_validate(inputs), ctx)
    return out, ctx.artifact_path(out.video)


def decode(path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_slideshow_mp4_decodes_as_h264_yuv420p_with_the_frames_and_fps(tmp_path):
    ctx = make_context(tmp_path)
    out, path = make(ctx, {"fps": 10}, images=images(ctx, (67, 51)), seconds_per_image=1.0,
                     transition="crossfade", transition_s=0.3)
    info = probe(path)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert (info["width"], info["height"]) == (66, 50)  # odd input sizes made even
    assert info["frames"] == 30 == out.frames and info["fps"] == pytest.approx(10)
    assert out.duration_s == pytest.approx(3.0) and out.video.media_type == "video/mp4"
    frames = decode(path)
    corner = [f[2:8, 58:64].mean(axis=(0, 1)) for f in frames]  # a corner the circles never reach
    assert np.abs(corner[5] - COLORS[0]).max() < 12 and np.abs(corner[25] - COLORS[2]).max() < 12
    # frames 10..12 cross-fade red -> green: in between, strictly
    mid = corner[11]
    assert COLORS[1][0] + 20 < mid[0] < COLORS[0][0] - 20 and COLORS[0][1] + 20 < mid[1] < COLORS[1][1] - 20
    assert np.abs(corner[13] - COLORS[1]).max() < 12  # after the fade: the green image alone


def test_zoom_and_pan_move_within_an_image_and_captions_are_burned_in(tmp_path):
    ctx = make_context(tmp_path)
    refs = images(ctx, (96, 64))
    for transition in ("zoom", "pan"):
        out, path = make(ctx, {"fps": 8}, images=refs[:2], seconds_per_image=1.0, transition=transition)
        frames = decode(path)
        assert len(frames) == 16 == out.frames
        assert np.abs(frames[0].astype(int) - frames[7].astype(int)).mean() > 3  # the camera moved
        assert np.abs(frames[0].astype(int) - frames[1].astype(int)).mean() < 8  # smoothly
    plain = decode(make(ctx, {"fps": 4}, images=refs[:1], seconds_per_image=0.5, transition="none")[1])[0]
    texted = decode(make(ctx, {"fps": 4}, images=refs[:1], captions=["Night falls"], seconds_per_image=0.5,
                         transition="none")[1])[0]
    assert np.abs(plain[-12:].astype(int) - texted[-12:].astype(int)).mean() > 20  # band with text at the bottom
    assert np.abs(plain[:20].astype(int) - texted[:20].astype(int)).mean() < 4  # the top untouched


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_animated_gif_and_webp(tmp_path, fmt):
    ctx = make_context(tmp_path)
    out, path = make(ctx, {"fps": 5, "format": fmt}, images=images(ctx), seconds_per_image=0.4,
                     transition="none")
    with Image.open(path) as im:
        # Pillow merges identical neighbours into one longer frame: 3 stills x 2 frames at 200 ms
        assert im.format == fmt.upper() and im.n_frames == 3 and out.frames == 6 and im.info.get("loop") == 0
        if fmt == "gif":
            total = 0
            for k in range(im.n_frames):
                im.seek(k)
                total += im.info["duration"]
            assert total == 1200
    assert out.video.media_type == f"image/{fmt}"


def test_bad_inputs_fail_clearly(tmp_path):
    ctx = make_context(tmp_path)
    with pytest.raises(ValueError, match="needs an 'images' input"):
        make(ctx)
    with pytest.raises(Exception, match="2 captions for 3 images"):
        MakeVideoNode.Inputs.model_validate({"images": [r.model_dump() for r in images(ctx)], "captions": ["a", "b"]})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make(ctx, images=[ArtifactRef(run_id="testrun", name="missing.png")])


def test_pipeline_mode_rejects_a_model_that_is_not_a_video_model(tmp_path):
    ctx = make_context(tmp_path)
    folder = str(embedded_path("sd"))
    with pytest.raises(ModelNotAvailable, match="is a StableDiffusionPipeline, not a text-to-video pipeline"):
        make(ctx, {"mode": "pipeline", "model": folder, "device": "cpu"}, prompt="a red circle")
    with pytest.raises(ValueError, match="needs a text-to-video model id or folder"):
        make(ctx, {"mode": "pipeline"}, prompt="a red circle")


# Measured with the embedded model (20 steps, 32 px, 10 frames, these prompts and seeds): neighbouring frames
# differ by 0.007..0.071 mean absolute (0..1 scale) while the two ends differ by 0.26.
NEIGHBOUR_MAX = 0.1


def test_morph_neighbours_close_and_ends_equal_generate_image(tmp_path):
    services = Services()
    ctx = make_context(tmp_path, services=services)
    a = ("a small red circle on a blue background", 11)
    b = ("a large red circle on a blue background", 12)
    out, path = make(ctx, {"mode": "morph", "fps": 4, "device": "cpu"}, prompt=a[0], prompt_to=b[0], seed=a[1],
                     seed_to=b[1], frames=10)
    info = probe(path)
    assert info["frames"] == 10 and info["codec"] == "h264" and (out.seed, out.seed_to) == (11, 12)

    from pixelmill.models.loaders import load_text2image, resolve_model
    from pixelmill.models.manager import manager_for
    from pixelmill.video.morph import morph_frames

    r = resolve_model("embedded", "sd", "cpu")
    from pixelmill.models.options import PipelineOptions

    options = PipelineOptions()  # generate_image's default serving options: the same manager key
    pipe = manager_for(ctx).get(("text2image", *r.key, *options.load_options()), lambda: load_text2image(r, options))
    frames = [np.asarray(f, dtype=np.float32) / 255 for f in morph_frames(
        pipe, prompt_a=a[0], prompt_b=b[0], seed_a=a[1], seed_b=b[1], frames=10, steps=20, guidance=3.0,
        width=32, height=32)]
    ends = []
    gen = GenerateImageNode(GenerateImageNode.Config(device="cpu"))
    for prompt, seed in (a, b):
        res = gen.run(GenerateImageNode.Inputs(prompt=prompt, seed=seed), ctx)
        with Image.open(ctx.artifact_path(res.image)) as im:
            ends.append(np.asarray(im.convert("RGB"), dtype=np.float32) / 255)
    assert np.abs(frames[0] - ends[0]).max() <= 2 / 255 and np.abs(frames[-1] - ends[1]).max() <= 2 / 255
    span = np.abs(frames[0] - frames[-1]).mean()
    steps = [float(np.abs(frames[i + 1] - frames[i]).mean()) for i in range(9)]
    print("morph: ends differ by", round(float(span), 4), "neighbours by", [round(s, 4) for s in steps])
    assert span > 0.15  # the ends are different pictures
    assert max(steps) < NEIGHBOUR_MAX and max(steps) < span / 2
    assert list(manager_for(ctx).load_counts.values()) == [1]  # morph and generate_image share the pipeline


def test_preflight_limits_for_posting(tmp_path):
    import av

    from pixelmill.video.encode import write_mp4
    from pixelmill.video.preflight import VideoRejected, check_video

    frames = [np.full((32, 48, 3), i * 20, np.uint8) for i in range(12)]
    good = tmp_path / "good.mp4"
    write_mp4(iter(frames), good, 4)
    info = check_video(good, max_bytes=1_000_000, max_duration_s=3.0, target="Mastodon")
    assert info["codec"] == "h264" and info["frames"] == 12 and info["duration_s"] == pytest.approx(3.0)
    with pytest.raises(VideoRejected, match=r"lasts 3.0 s, over the 2 s limit for Mastodon"):
        check_video(good, max_duration_s=2, target="Mastodon")
    with pytest.raises(VideoRejected, match=r"MB, over the 0.0 MB limit"):
        check_video(good, max_bytes=100)
    other = tmp_path / "mpeg4.mp4"  # a codec browsers do not play (what old export_to_video wrote)
    with av.open(str(other), "w") as c:
        s = c.add_stream("mpeg4", rate=4)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with pytest.raises(VideoRejected, match="is mpeg4, not h264"):
        check_video(other)
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(VideoRejected, match="not a readable video"):
        check_video(tmp_path / "junk.mp4")
