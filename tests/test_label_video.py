"""label_ai on an MP4: the badge burned into every frame (decoded and checked), H.264 yuv420p kept, XMP in a
uuid box (read by inspect and exiftool), MP4 tags, C2PA for video/mp4 through c2pa-python."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from pydantic import ValidationError

from pixelmill.labels import c2pa as c2pa_mod
from pixelmill.labels import mp4 as mp4_mod
from pixelmill.labels.inspect import format_report, inspect_file
from pixelmill.labels.xmp import TRAINED
from pixelmill.testing import make_context
from pixelmill.video.encode import probe, write_mp4
from pixelmill_nodes.label_ai import LabelAiNode

W, H, N, FPS = 160, 96, 12, 6
COLORS = [(200, 200, 210), (20, 30, 40), (90, 160, 60)]  # light, dark, mid: the badge must show on each


def _video(ctx):
    frames = [np.full((H, W, 3), COLORS[i * len(COLORS) // N], np.uint8) for i in range(N)]
    ref, path = ctx.new_artifact("video.mp4", "video/mp4")
    write_mp4(frames, path, FPS)
    return ref, path


def _decode(path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _label(ctx, config=None, **inputs):
    node = LabelAiNode(LabelAiNode.Config.model_validate(config or {}))
    out = node.run(LabelAiNode.Inputs.model_validate(inputs), ctx)
    return out, ctx.artifact_path(out.video)


def test_mp4_gets_badge_in_every_frame_xmp_tags_and_c2pa(tmp_path):
    ctx = make_context(tmp_path)
    ref, src = _video(ctx)
    certs = c2pa_mod.make_dev_cert(tmp_path / "certs")
    out, path = _label(ctx, {"c2pa": {"cert_chain": str(certs["chain"]), "private_key": str(certs["key"])}},
                       video=ref.model_dump(), prompt="a lighthouse <at> dawn & storm", model="embedded", seed=7)
    assert out.video == out.image and out.video.media_type == "video/mp4" and out.video.name.endswith(".mp4")
    assert out.labels == ["badge", "xmp", "mp4_tags", "parameters", "c2pa"]
    assert "watermark" in out.skipped and out.source_type == TRAINED
    # the file still plays everywhere: H.264 yuv420p, same size, frame count and rate
    info = probe(path)
    assert (info["codec"], info["pix_fmt"], info["width"], info["height"]) == ("h264", "yuv420p", W, H)
    assert info["frames"] == N and info["fps"] == pytest.approx(FPS)
    # the badge is in the bottom-right corner of every frame, and only there
    before, after = _decode(src), _decode(path)
    for a, b in zip(before, after, strict=True):
        corner = np.abs(a[-14:-4, -40:-6].astype(int) - b[-14:-4, -40:-6].astype(int)).mean()
        rest = np.abs(a[:40, :80].astype(int) - b[:40, :80].astype(int)).mean()
        assert corner > 25 and rest < 3, (corner, rest)
    # XMP in the uuid box, C2PA for video/mp4 (trusting the dev CA), MP4 tags: all read back
    report = inspect_file(path, trust_anchors_pem=certs["ca"].read_bytes())
    assert report["format"] == "MP4" and report["labelled_ai"] and set(report["signals"]) == {"xmp", "c2pa"}
    assert report["source_type"] == TRAINED and report["xmp"]["badge"] == "AI-generated"
    assert report["parameters"]["xmp"]["prompt"] == "a lighthouse <at> dawn & storm"
    assert report["c2pa"]["validation_state"] == "Trusted" and report["c2pa"]["source_type"] == TRAINED
    assert report["c2pa"]["actions"] == ["c2pa.created"]
    assert "AI-generated" in report["mp4_tags"]["comment"]
    assert "LABELLED as AI-generated" in format_report(report)
    exiftool = shutil.which("exiftool")
    if exiftool:
        tags = json.loads(subprocess.run([exiftool, "-j", "-G1", "-XMP-iptcExt:DigitalSourceType", str(path)],
                                         capture_output=True, text=True, check=True).stdout)[0]
        assert tags.get("XMP-iptcExt:DigitalSourceType") == TRAINED
    # tampering with the video data, or with the XMP packet, breaks the C2PA hash
    for marker, offset in ((b"mdat", 200), (b"a lighthouse &lt;at&gt;", 2)):
        data = bytearray(path.read_bytes())
        at = data.find(marker)
        assert at > 0
        data[at + offset] ^= 0x01
        bad = tmp_path / "bad.mp4"
        bad.write_bytes(bytes(data))
        report = c2pa_mod.read(bad, "video/mp4", trust_anchors_pem=certs["ca"].read_bytes())
        assert report.validation_state == "Invalid", marker


def test_mp4_without_c2pa_and_without_badge(tmp_path):
    ctx = make_context(tmp_path)
    ref, src = _video(ctx)
    out, path = _label(ctx, {"badge": False, "parameters": False}, video=ref.model_dump())
    assert out.labels == ["xmp", "mp4_tags"] and "c2pa" in out.skipped
    for a, b in zip(_decode(src), _decode(path), strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 3  # re-encoded, nothing drawn
    report = inspect_file(path)
    assert report["signals"] == ["xmp"] and report["c2pa"]["present"] is False
    assert report["parameters"]["xmp"] == {}
    # an unlabelled MP4 reads as not labelled; the XMP box is not added twice
    assert inspect_file(src)["labelled_ai"] is False
    with pytest.raises(ValueError, match="already has an XMP box"):
        mp4_mod.append_xmp(path, b"<x/>")


def test_video_input_must_be_an_mp4_and_one_input_only(tmp_path):
    ctx = make_context(tmp_path)
    ref, _ = ctx.new_artifact("anim.gif", "image/gif")
    from PIL import Image

    Image.new("RGB", (32, 32)).save(ctx.artifact_path(ref), "GIF")
    with pytest.raises(ValueError, match="not an MP4"):
        _label(ctx, video=ref.model_dump())
    with pytest.raises(ValidationError, match="exactly one of 'image' or 'video'"):
        LabelAiNode.Inputs.model_validate({"image": ref.model_dump(), "video": ref.model_dump()})
    with pytest.raises(ValueError, match="exactly one"):
        _label(ctx)
