"""label_ai node, `pixelmill inspect`, the watermark and C2PA signing."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pixelmill.cli import main as cli_main
from pixelmill.labels import badge as badge_mod
from pixelmill.labels import c2pa as c2pa_mod
from pixelmill.labels import watermark as wm
from pixelmill.labels.inspect import inspect_file
from pixelmill.labels.samples import generated_like
from pixelmill.labels.xmp import COMPOSITE, TRAINED
from pixelmill.loader import load_text
from pixelmill.node import ArtifactRef, Model, Node
from pixelmill.registry import Registry
from pixelmill.runtime import Runtime
from pixelmill.settings import Settings
from pixelmill.status import RunStatus

PARAMS = {"prompt": "a red fox <in> the snow & ice — 狐, 35mm", "model": "tiny-sd", "seed": 1234, "steps": 4}


class _MakeInputs(Model):
    size: int = 128
    format: str = "PNG"
    kind: str = "scene"


class _MakeOutputs(Model):
    image: ArtifactRef


class MakeImage(Node):
    """Test helper: writes a synthetic picture as an artifact (stands in for generate_image)."""

    type = "test_make_image"
    Inputs = _MakeInputs
    Outputs = _MakeOutputs

    def run(self, inputs, ctx):
        ext = "jpg" if inputs.format == "JPEG" else "png"
        ref, path = ctx.new_artifact(f"gen.{ext}", "image/jpeg" if ext == "jpg" else "image/png")
        generated_like(inputs.size, 5, inputs.kind).save(path, inputs.format, **({"quality": 95} if ext == "jpg" else {}))
        return _MakeOutputs(image=ref)


def _runtime(tmp_path, environ=None):
    reg = Registry.from_entry_points()
    reg.register(MakeImage)
    return Runtime.create(Settings.from_env(home=tmp_path), registry=reg, environ=environ)


def _label(tmp_path, *, size=128, fmt="PNG", config="{}", extra_with="", kind="scene", environ=None,
           status=RunStatus.SUCCEEDED):
    rt = _runtime(tmp_path, environ)
    wf = load_text(f"""
name: label-test
steps:
  - id: gen
    node: test_make_image
    with: {{size: {size}, format: {fmt}, kind: {kind}}}
  - id: label
    node: label_ai
    config: {config}
    with:
      image: "${{{{ steps.gen.outputs.image }}}}"
      prompt: "{PARAMS['prompt']}"
      model: {PARAMS['model']}
      seed: {PARAMS['seed']}
      steps: {PARAMS['steps']}
      {extra_with}
outputs:
  image: "${{{{ steps.label.outputs.image }}}}"
  labels: "${{{{ steps.label.outputs.labels }}}}"
  skipped: "${{{{ steps.label.outputs.skipped }}}}"
  source_type: "${{{{ steps.label.outputs.source_type }}}}"
""", "label-test.yaml", rt.registry)
    result = rt.run(wf, {})
    assert result.status is status, result.error
    if status is not RunStatus.SUCCEEDED:
        return rt, result
    ref = result.outputs["image"]
    path = rt.store.artifacts_root / ref["run_id"] / ref["name"]
    assert path.is_file()
    return path, result.outputs, ref["run_id"]


def _inspect_cli(path, *args):
    result = CliRunner().invoke(cli_main, ["inspect", str(path), "--json", *args])
    return result.exit_code, json.loads(result.output)


def _exiftool_source_type(path):
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        pytest.skip("exiftool is not installed and could not be installed here "
                    "(`make test` installs Debian's libimage-exiftool-perl where apt-get works)")
    out = subprocess.run([exiftool, "-j", "-G1", "-XMP-iptcExt:DigitalSourceType", str(path)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0].get("XMP-iptcExt:DigitalSourceType")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_labelled_file_carries_source_type_for_inspect_and_exiftool(tmp_path, fmt):
    path, outputs, run_id = _label(tmp_path, fmt=fmt)
    assert path.suffix == (".png" if fmt == "PNG" else ".jpg")
    assert outputs["labels"] == ["badge", "watermark", "xmp", "parameters"]
    assert outputs["source_type"] == TRAINED
    assert "c2pa" in outputs["skipped"]
    code, report = _inspect_cli(path, "--no-c2pa")
    assert code == 0
    assert report["labelled_ai"] is True
    assert report["source_type"] == TRAINED
    assert set(report["signals"]) == {"xmp", "watermark"}
    assert report["watermark"]["payload"] == "AI-GEN"
    assert _exiftool_source_type(path) == TRAINED
    # with Pillow alone, the raw container is right too
    with Image.open(path) as im:
        if fmt == "PNG":
            assert "XML:com.adobe.xmp" in im.info
        else:
            assert any(m == "APP1" and p.startswith(b"http://ns.adobe.com/xap/1.0/\x00") for m, p in im.applist)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_generation_parameters_round_trip(tmp_path, fmt):
    path, _, run_id = _label(tmp_path, fmt=fmt)
    report = inspect_file(path, check_c2pa=False)
    xmp_params = report["parameters"]["xmp"]
    assert xmp_params["prompt"] == PARAMS["prompt"]
    assert xmp_params["model"] == PARAMS["model"]
    assert int(xmp_params["seed"]) == PARAMS["seed"]
    assert int(xmp_params["steps"]) == PARAMS["steps"]
    assert xmp_params["run_id"] == run_id
    assert xmp_params["pixelmill_version"]
    text = report["parameters"]["text"]
    if fmt == "PNG":
        with Image.open(path) as im:
            assert im.text["parameters"] == text
        lines = text.splitlines()
        assert lines[0] == PARAMS["prompt"]
        assert f"Seed: {PARAMS['seed']}" in lines[-1] and f"Steps: {PARAMS['steps']}" in lines[-1]
        assert f"Run id: {run_id}" in lines[-1]
    else:
        assert text is None  # JPEG has no text chunks; XMP carries them


def test_edited_image_gets_composite_source_type(tmp_path):
    path, outputs, _ = _label(tmp_path, extra_with="edited: true")
    assert outputs["source_type"] == COMPOSITE
    report = inspect_file(path, check_c2pa=False)
    assert report["source_type"] == COMPOSITE and report["labelled_ai"]
    assert _exiftool_source_type(path) == COMPOSITE


def test_unlabelled_image_is_reported_unlabelled(tmp_path):
    for name, fmt in (("plain.png", "PNG"), ("plain.jpg", "JPEG")):
        path = tmp_path / name
        generated_like(256, 9).save(path, fmt)
        code, report = _inspect_cli(path)
        assert code == 1, report
        assert report["labelled_ai"] is False
        assert report["source_type"] is None
        assert report["watermark"]["found"] is False
        assert report["c2pa"]["present"] is False
        assert report["signals"] == []
    text = CliRunner().invoke(cli_main, ["inspect", str(tmp_path / "plain.png")]).output
    assert "NOT labelled" in text


def test_inspect_unreadable_file_exit_2(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    code, report = _inspect_cli(bad)
    assert code == 2 and "not a readable image" in report["error"]
    code, report = _inspect_cli(tmp_path / "missing.png")
    assert code == 2 and "no such file" in report["error"]


def test_tiny_image_skips_watermark_with_reason(tmp_path):
    path, outputs, _ = _label(tmp_path, size=48)
    assert "watermark" not in outputs["labels"]
    assert "48x48" in outputs["skipped"]["watermark"] and "at least 64 px" in outputs["skipped"]["watermark"]
    assert {"badge", "xmp", "parameters"} <= set(outputs["labels"])
    assert inspect_file(path, check_c2pa=False)["labelled_ai"]  # XMP still says so


def test_badge_is_drawn_in_the_corner_and_readable_on_light_and_dark():
    for kind in ("light", "dark"):
        img = generated_like(256, 2, kind)
        for corner in badge_mod.CORNERS:
            out, (x0, y0, x1, y1), text = badge_mod.draw_badge(img, "AI-generated", corner, 0.08)
            assert text == "AI-generated"
            assert out.size == img.size
            assert (x0 < 128) == corner.endswith("left") and (y0 < 128) == corner.startswith("top")
            height = y1 - y0
            assert 0.05 * 256 <= height <= 0.2 * 256  # relative to the short side
            region = np.asarray(out.convert("RGB"), dtype=np.float64)[y0:y1, x0:x1]
            luma = region @ [0.2126, 0.7152, 0.0722]
            dark = np.percentile(luma, 20)
            light = np.percentile(luma, 99.5)
            # text (light) against the pill (dark): WCAG AA contrast for text
            assert badge_mod.contrast_ratio((light,) * 3, (dark,) * 3) >= 4.5, (kind, corner)
        # the badge changes the picture where it is and nowhere else
        out, (x0, y0, x1, y1), _ = badge_mod.draw_badge(img)
        diff = np.abs(np.asarray(out, dtype=int) - np.asarray(img, dtype=int)).sum(axis=2)
        mask = np.zeros_like(diff, dtype=bool)
        mask[y0:y1 + 1, x0:x1 + 1] = True
        assert diff[~mask].max() == 0 and diff[mask].mean() > 10


def test_badge_on_small_images_shortens_or_is_skipped():
    out, box, text = badge_mod.draw_badge(Image.new("RGB", (24, 24), "white"))
    assert text == "AI" and box[2] <= 24 and box[3] <= 24
    with pytest.raises(badge_mod.BadgeDoesNotFit, match="4x4"):
        badge_mod.draw_badge(Image.new("RGB", (4, 4), "white"))


def test_independent_writer_is_read_by_inspect(tmp_path):
    """XMP written by exiftool (not by us) is read back by `pixelmill inspect`."""
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        pytest.skip("exiftool is not installed and could not be installed here")
    path = tmp_path / "ext.jpg"
    generated_like(96, 4).save(path, "JPEG")
    subprocess.run([exiftool, "-q", "-overwrite_original", f"-XMP-iptcExt:DigitalSourceType={COMPOSITE}",
                    str(path)], check=True)
    code, report = _inspect_cli(path, "--no-c2pa")
    assert code == 0 and report["source_type"] == COMPOSITE and report["signals"] == ["xmp"]


def test_badge_config_is_validated(tmp_path):
    rt = _runtime(tmp_path)
    from pixelmill.problems import WorkflowInvalid
    with pytest.raises(WorkflowInvalid) as info:
        load_text("""
name: bad
steps:
  - id: label
    node: label_ai
    config: {badge_corner: middle, watermark_payload: "far too long payload"}
    with: {image: {run_id: x, name: y.png}}
""", "bad.yaml", rt.registry)
    text = str(info.value) + " ".join(str(p) for p in info.value.problems)
    assert "badge_corner" in text and "watermark_payload" in text and "at most 6" in text


# ---- watermark -----------------------------------------------------------------------------------------------

def _jpeg(img, quality=80):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


@pytest.mark.parametrize("size", [64, 128, 256, 512])
def test_watermark_survives_jpeg80_and_half_resize(size):
    kinds = ["scene", "light", "dark"] + (["upscaled"] if size > 64 else [])
    for seed, kind in enumerate(kinds):
        img = generated_like(size, seed, kind)
        marked = wm.embed(img, "AI-GEN")
        attacked = {
            "jpeg80": _jpeg(marked),
            "half": marked.resize((size // 2, size // 2), Image.Resampling.BICUBIC),
            "jpeg80+half": _jpeg(marked).resize((size // 2, size // 2), Image.Resampling.BICUBIC),
            "half+jpeg80": _jpeg(marked.resize((size // 2, size // 2), Image.Resampling.LANCZOS)),
        }
        for name, im in attacked.items():
            acc = wm.bit_accuracy(im, "AI-GEN")
            assert acc >= 0.95, (size, kind, name, acc)
        det = wm.decode(attacked["jpeg80+half"])
        assert det.crc_ok and det.text == "AI-GEN"


def test_watermark_is_invisible_enough_and_absent_from_unmarked_images():
    img = generated_like(256, 3)
    marked = wm.embed(img, "xyz")
    a = np.asarray(img, dtype=np.float64)
    b = np.asarray(marked, dtype=np.float64)
    psnr = 10 * np.log10(255**2 / ((a - b) ** 2).mean())
    assert psnr > 34, psnr
    assert wm.decode(marked).text == "xyz"
    # different key: nothing found
    assert not wm.decode(marked, key=1).crc_ok
    false_positives = sum(wm.decode(generated_like(s, i, k)).crc_ok
                          for i, (s, k) in enumerate([(64, "scene"), (128, "light"), (256, "dark"),
                                                      (512, "scene"), (96, "flat"), (200, "scene")] * 3))
    assert false_positives == 0


def test_watermark_on_large_non_square_image():
    img = generated_like(512, 6).resize((1536, 1024), Image.Resampling.BICUBIC)
    marked = wm.embed(img, "big")
    for attacked in (_jpeg(marked), marked.resize((768, 512), Image.Resampling.BICUBIC)):
        det = wm.decode(attacked)
        assert det.crc_ok and det.text == "big"


def test_watermark_below_min_side_is_refused():
    with pytest.raises(wm.WatermarkError, match="at least 64 px"):
        wm.embed(generated_like(32, 0), "AI-GEN")
    with pytest.raises(wm.WatermarkError, match="at most 6"):
        wm.payload_bytes("seven!!")


# ---- C2PA ----------------------------------------------------------------------------------------------------

def test_dev_cert_cli_and_c2pa_signed_file_validates(tmp_path):
    certs = tmp_path / "certs"
    result = CliRunner().invoke(cli_main, ["c2pa", "dev-cert", str(certs)])
    assert result.exit_code == 0, result.output
    assert "untrusted" in result.output
    again = CliRunner().invoke(cli_main, ["c2pa", "dev-cert", str(certs)])
    assert again.exit_code != 0 and "--force" in again.output
    chain = certs / "chain.pem"
    assert chain.read_text().count("BEGIN CERTIFICATE") == 2  # end-entity + intermediate, no root
    for fmt, mime in (("PNG", "image/png"), ("JPEG", "image/jpeg")):
        path, outputs, _ = _label(
            tmp_path / fmt, fmt=fmt, size=256,
            config="{{c2pa: {{cert_chain: '{}', private_key: '{}'}}}}".format(chain, certs / "signer.key"))
        assert outputs["labels"] == ["badge", "watermark", "xmp", "parameters", "c2pa"]
        # c2pa's own Reader, trusting the dev CA: the chain and signature validate
        trusted = c2pa_mod.read(path, mime, trust_anchors_pem=(certs / "ca.pem").read_bytes())
        assert trusted.present and trusted.validation_state == "Trusted", trusted
        assert trusted.source_type == TRAINED and "c2pa.created" in trusted.actions
        assert not [c for c in trusted.validation_codes if c.startswith("failure:")]
        # without trusting it: a valid signature from an untrusted signer
        plain = c2pa_mod.read(path, mime)
        assert plain.validation_state == "Valid"
        assert "failure:signingCredential.untrusted" in plain.validation_codes
        # every signal survives signing
        code, report = _inspect_cli(path, "--trust", str(certs / "ca.pem"))
        assert code == 0 and set(report["signals"]) == {"xmp", "c2pa", "watermark"}
        assert report["c2pa"]["validation_state"] == "Trusted"
        assert _exiftool_source_type(path) == TRAINED


def test_c2pa_key_from_secret_never_reaches_the_store(tmp_path):
    certs = c2pa_mod.make_dev_cert(tmp_path / "certs")
    key = certs["key"].read_text()
    config = "{{c2pa: {{cert_chain: '{}', private_key_secret: C2PA_KEY}}}}".format(certs["chain"])
    path, outputs, run_id = _label(tmp_path / "ok", config=config, environ={"C2PA_KEY": key})
    assert "c2pa" in outputs["labels"]
    assert c2pa_mod.read(path, "image/png", trust_anchors_pem=certs["ca"].read_bytes()).validation_state == "Trusted"
    rt, result = _label(tmp_path / "missing", config=config, environ={}, status=RunStatus.FAILED)
    assert "C2PA_KEY" in result.error["message"]
    # a key that is not a key: a clear error, and the value never shows up in the history
    rt, result = _label(tmp_path / "bad", config=config, environ={"C2PA_KEY": "not-a-pem-key-at-all"},
                        status=RunStatus.FAILED)
    assert "C2PA signing failed" in result.error["message"]
    run_id = rt.store.list_runs(limit=1)[0]["id"]
    dump = json.dumps([e.to_dict() for e in rt.store.events(run_id)]) + json.dumps(rt.store.get_run(run_id))
    assert "not-a-pem-key-at-all" not in dump


def test_c2pa_tampered_file_is_invalid(tmp_path):
    certs = c2pa_mod.make_dev_cert(tmp_path / "certs")
    src = tmp_path / "a.png"
    generated_like(128, 1).save(src)
    dst = tmp_path / "b.png"
    c2pa_mod.sign_file(src, dst, "image/png", cert_chain_pem=certs["chain"].read_bytes(),
                       key_pem=certs["key"].read_bytes(), manifest=c2pa_mod.manifest_definition(TRAINED, title="b"))
    assert c2pa_mod.read(dst, "image/png", trust_anchors_pem=certs["ca"].read_bytes()).validation_state == "Trusted"
    # flip one byte of the image data: the manifest's hash no longer matches
    data = dst.read_bytes()
    idx = data.find(b"IDAT")
    tampered = bytearray(data)
    tampered[idx + 20] ^= 0xFF
    bad = tmp_path / "bad.png"
    bad.write_bytes(bytes(tampered))
    report = c2pa_mod.read(bad, "image/png", trust_anchors_pem=certs["ca"].read_bytes())
    assert report.validation_state == "Invalid", report
    assert "failure:assertion.dataHash.mismatch" in report.validation_codes
    assert not report.says_ai


def test_c2pa_config_errors_are_clear(tmp_path):
    rt = _runtime(tmp_path)
    wf = load_text("""
name: c2pa-missing
steps:
  - id: gen
    node: test_make_image
  - id: label
    node: label_ai
    config: {c2pa: {cert_chain: /nonexistent/chain.pem, private_key: /nonexistent/key.pem}}
    with: {image: "${{ steps.gen.outputs.image }}"}
""", "c2pa-missing.yaml", rt.registry)
    result = rt.run(wf, {})
    assert result.status is RunStatus.FAILED
    assert "cert_chain" in result.error["message"] and "dev-cert" in result.error["message"]
    assert not list((rt.store.artifacts_root / rt.store.list_runs(limit=1)[0]["id"]).glob("label-*"))


def test_pixelmill_inspect_entry_point_runs(tmp_path):
    """The installed console script: exit code 1 for an unlabelled file."""
    path = tmp_path / "x.png"
    generated_like(64, 0).save(path)
    exe = Path(sys.executable).with_name("pixelmill")
    proc = subprocess.run([str(exe), "inspect", str(path), "--no-c2pa"], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert "NOT labelled" in proc.stdout


def test_min_side_upscales_tiny_images_so_every_label_fits(tmp_path):
    from PIL import Image

    from pixelmill.node import ArtifactRef
    from pixelmill.testing import make_context
    from pixelmill_nodes.label_ai import LabelAiNode

    ctx = make_context(tmp_path)
    src = ctx.run_dir / "tiny.png"
    Image.new("RGB", (32, 32), (200, 40, 40)).save(src)
    ref = ArtifactRef(run_id=ctx.run_id, name="tiny.png", media_type="image/png")
    node = LabelAiNode(LabelAiNode.Config(min_side=256))
    out = node.run(LabelAiNode.Inputs(image=ref, prompt="a red square"), ctx)
    with Image.open(ctx.artifact_path(out.image)) as labelled:
        assert labelled.size == (256, 256)
    assert {"badge", "watermark", "xmp"} <= set(out.labels) and set(out.skipped) == {"c2pa"}
