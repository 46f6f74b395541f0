"""label_ai node, `pixelmill inspect`, the watermark and C2PA signing."""

from __future__ import annotations

import functools
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
    seed: int = 5
    icc: bool = False


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
        extra = {"quality": 95} if ext == "jpg" else {}
        if inputs.icc:
            extra["icc_profile"] = _icc_profile()
        generated_like(inputs.size, inputs.seed, inputs.kind).save(path, inputs.format, **extra)
        return _MakeOutputs(image=ref)


@functools.lru_cache(maxsize=1)
def _icc_profile() -> bytes:  # (the profile carries its creation time: make it once)
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _runtime(tmp_path, environ=None):
    reg = Registry.from_entry_points()
    reg.register(MakeImage)
    return Runtime.create(Settings.from_env(home=tmp_path), registry=reg, environ=environ)


def _label(tmp_path, *, size=128, fmt="PNG", config="{}", extra_with="", kind="scene", environ=None,
           status=RunStatus.SUCCEEDED, gen_with=""):
    rt = _runtime(tmp_path, environ)
    wf = load_text(f"""
name: label-test
steps:
  - id: gen
    node: test_make_image
    with: {{size: {size}, format: {fmt}, kind: {kind}{gen_with}}}
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
  key_id: "${{{{ steps.label.outputs.watermark_key_id }}}}"
""", "label-test.yaml", rt.registry)
    result = rt.run(wf, {})
    assert result.status is status, result.error
    if status is not RunStatus.SUCCEEDED:
        return rt, result
    ref = result.outputs["image"]
    path = rt.store.artifacts_root / ref["run_id"] / ref["name"]
    assert path.is_file()
    return path, result.outputs, ref["run_id"]


def _inspect_cli(path, *args, home=None, environ=None):
    """`pixelmill inspect --json`; ``home``: the PIXELMILL_HOME whose stored watermark key it may use."""
    env = {"PIXELMILL_HOME": str(home) if home else "/nonexistent-pixelmill-home",
           "PIXELMILL_WATERMARK_KEY": None, **(environ or {})}
    result = CliRunner().invoke(cli_main, ["inspect", str(path), "--json", *args], env=env)
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
    code, report = _inspect_cli(path, "--no-c2pa", home=tmp_path)
    assert code == 0
    assert report["labelled_ai"] is True
    assert report["source_type"] == TRAINED
    assert set(report["signals"]) == {"xmp", "watermark"}
    assert report["watermark"]["payload"] == "AI-GEN"
    assert report["watermark"]["key"] == "stored" and report["watermark"]["forgeable"] is False
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


def _exiftool_json(path, *tags):
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        pytest.skip("exiftool is not installed (`make test` installs Debian's libimage-exiftool-perl)")
    out = subprocess.run([exiftool, "-j", "-G1", "-s", *tags, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_iptc_2025_ai_fields_are_read_by_exiftool(tmp_path, fmt):
    config = "{prompt_writer: Ann Example, ai_system_version: '2.1'}"
    path, outputs, _ = _label(tmp_path, fmt=fmt, config=config)
    tags = _exiftool_json(path, "-XMP-iptcExt:all")
    assert tags["XMP-iptcExt:DigitalSourceType"] == TRAINED
    assert tags["XMP-iptcExt:AISystemUsed"] == PARAMS["model"]
    assert str(tags["XMP-iptcExt:AISystemVersionUsed"]) == "2.1"
    assert tags["XMP-iptcExt:AIPromptInformation"] == PARAMS["prompt"]
    assert tags["XMP-iptcExt:AIPromptWriterName"] == "Ann Example"
    ai = inspect_file(path, check_c2pa=False)["xmp"]["ai"]
    assert ai == {"system": PARAMS["model"], "system_version": "2.1", "prompt_information": PARAMS["prompt"],
                  "prompt_writer": "Ann Example"}


def test_record_prompt_false_leaves_the_prompt_out(tmp_path):
    path, outputs, _ = _label(tmp_path, config="{record_prompt: false}")
    assert b"red fox" not in path.read_bytes()
    tags = _exiftool_json(path, "-XMP-iptcExt:all")
    assert "XMP-iptcExt:AIPromptInformation" not in tags and tags["XMP-iptcExt:AISystemUsed"] == PARAMS["model"]
    report = inspect_file(path, check_c2pa=False)
    assert "prompt" not in report["parameters"]["xmp"] and report["parameters"]["xmp"]["model"] == PARAMS["model"]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_icc_profile_is_kept(tmp_path, fmt):
    path, outputs, _ = _label(tmp_path, fmt=fmt, gen_with=", icc: true")
    with Image.open(path) as im:
        assert im.info.get("icc_profile") == _icc_profile()
    # and without one in the input, none is invented
    path, outputs, _ = _label(tmp_path / "plain", fmt=fmt)
    with Image.open(path) as im:
        assert not im.info.get("icc_profile")


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
    assert "48x48" in outputs["skipped"]["watermark"] and "at least 128 px" in outputs["skipped"]["watermark"]
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


def _psnr(a, b):
    x = np.asarray(a.convert("RGB"), dtype=np.float64)
    y = np.asarray(b.convert("RGB"), dtype=np.float64)
    return 10 * np.log10(255**2 / ((x - y) ** 2).mean())


KEY = b"test key: not a real secret"


def _photo():
    data = pytest.importorskip("skimage.data", reason="scikit-image (dev extra) ships the test photos")
    return Image.fromarray(data.camera()).convert("RGB")


@pytest.mark.parametrize("source", ["photo", "synthetic"])
def test_watermark_survives_everyday_edits(source):
    """A few of the bench's attacks on two images (the full sweep is bench/watermark.py)."""
    from PIL import ImageDraw, ImageOps

    img = _photo() if source == "photo" else generated_like(512, 11)
    marked = wm.embed(img, "AI-GEN", key=KEY)
    assert _psnr(img, marked) >= 38.0

    def bar(im):
        im = im.copy()
        ImageDraw.Draw(im).rectangle([0, im.height * 87 // 100, im.width, im.height], fill=(20, 20, 20))
        return im

    attacks = {
        "jpeg q40": _jpeg(marked, 40),
        "resize 25%": marked.resize((128, 128), Image.Resampling.BICUBIC),
        "crop 10% left": marked.crop((51, 0, 512, 512)),
        "flip": ImageOps.mirror(marked),
        "rotate 2": marked.rotate(2, Image.Resampling.BICUBIC),
        "caption bar 13%": bar(marked),
    }
    for name, attacked in attacks.items():
        det = wm.detect(attacked, [KEY])
        assert det.found and det.text == "AI-GEN", (name, det.z)
        assert det.key_id == wm.key_id(KEY)
    assert wm.detect(attacks["flip"], [KEY]).flipped


def test_watermark_key_matters_and_unmarked_images_are_clean():
    img = generated_like(256, 3)
    marked = wm.embed(img, "xyz", key=KEY)
    assert wm.detect(marked, [KEY]).text == "xyz"
    # another key (or the public demo key) finds nothing; trying several keys names the right one
    assert not wm.detect(marked, [b"another key"]).found
    assert not wm.detect(marked).found
    assert wm.detect(marked, [wm.DEMO_KEY, KEY]).key_id == wm.key_id(KEY)
    unmarked = [generated_like(s, 40 + i, k) for i, (s, k) in enumerate([(128, "scene"), (256, "light"),
                                                                          (512, "upscaled")])]
    assert not any(wm.detect(im, [KEY, wm.DEMO_KEY]).found for im in unmarked)


def test_watermark_on_large_non_square_image():
    img = generated_like(512, 6).resize((1536, 1024), Image.Resampling.BICUBIC)
    marked = wm.embed(img, "big", key=KEY)
    for attacked in (_jpeg(marked), marked.resize((768, 512), Image.Resampling.BICUBIC)):
        det = wm.detect(attacked, [KEY])
        assert det.found and det.text == "big"


def test_watermark_below_min_side_is_refused():
    with pytest.raises(wm.WatermarkError, match="at least 128 px"):
        wm.embed(generated_like(64, 0), "AI-GEN")
    with pytest.raises(wm.WatermarkError, match="at most 6"):
        wm.payload_bytes("seven!!")


def test_node_creates_a_private_key_once_and_inspect_names_it(tmp_path):
    path1, out1, _ = _label(tmp_path, size=256)
    key_file = tmp_path / "watermark.key"
    assert key_file.is_file() and (key_file.stat().st_mode & 0o777) == 0o600
    path2, out2, _ = _label(tmp_path, size=256)
    assert out1["key_id"] == out2["key_id"]  # created once, then reused
    code, report = _inspect_cli(path2, "--no-c2pa", home=tmp_path)
    w = report["watermark"]
    assert w["found"] and w["key"] == "stored" and w["key_id"] == out1["key_id"]
    assert w["verified"].startswith("keyed") and not w["forgeable"]
    # without the key (another home, no environment key) the mark cannot be verified
    code, report = _inspect_cli(path2, "--no-c2pa", home=tmp_path / "elsewhere")
    assert report["watermark"]["found"] is False and report["signals"] == ["xmp"]
    # the key never reaches outputs or the stored history
    assert key_file.read_text().strip() not in json.dumps(out2)


def test_environment_key_wins_and_demo_key_is_called_forgeable(tmp_path):
    secret = "s3cret watermark key for the test"
    path, out, run_id = _label(tmp_path / "env", size=256, environ={"PIXELMILL_WATERMARK_KEY": secret})
    assert not (tmp_path / "env" / "watermark.key").exists()
    assert out["key_id"] == wm.key_id(secret.encode())
    code, report = _inspect_cli(path, "--no-c2pa", environ={"PIXELMILL_WATERMARK_KEY": secret})
    assert report["watermark"]["key"] == "environment" and not report["watermark"]["forgeable"]
    key_file = tmp_path / "k.txt"
    key_file.write_text(secret + "\n")
    code, report = _inspect_cli(path, "--no-c2pa", "--watermark-key-file", str(key_file))
    assert report["watermark"]["key"] == "file"
    path, out, _ = _label(tmp_path / "demo", size=256, config="{watermark_key: demo}")
    code, report = _inspect_cli(path, "--no-c2pa")
    assert report["watermark"]["found"] and report["watermark"]["verified"] == "unkeyed, forgeable"
    text = CliRunner().invoke(cli_main, ["inspect", str(path), "--no-c2pa"],
                              env={"PIXELMILL_HOME": str(tmp_path / "none")}).output
    assert "unkeyed, forgeable" in text


def test_inspect_still_reads_version_1_marks(tmp_path):
    from pixelmill.labels import watermark_v1

    path = tmp_path / "old.png"
    watermark_v1.embed(generated_like(256, 2), "AI-GEN").save(path)
    code, report = _inspect_cli(path, "--no-c2pa")
    w = report["watermark"]
    assert code == 0 and w["found"] and w["version"] == 1 and w["payload"] == "AI-GEN" and w["forgeable"]
    assert "version 1" in w["verified"]


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
        code, report = _inspect_cli(path, "--trust", str(certs / "ca.pem"), home=tmp_path / fmt)
        assert code == 0 and set(report["signals"]) == {"xmp", "c2pa", "watermark"}
        assert report["c2pa"]["validation_state"] == "Trusted"
        assert _exiftool_source_type(path) == TRAINED


def test_c2pa_edit_is_opened_plus_edited_with_the_parent_as_ingredient(tmp_path):
    import c2pa

    certs = c2pa_mod.make_dev_cert(tmp_path / "certs")
    config = "{{c2pa: {{cert_chain: '{}', private_key: '{}'}}}}".format(certs["chain"], certs["key"])
    path, outputs, _ = _label(tmp_path, size=256, config=config,
                              extra_with='parent: "${{ steps.gen.outputs.image }}"')
    assert outputs["source_type"] == COMPOSITE and "c2pa" in outputs["labels"]
    with open(path, "rb") as fh, c2pa.Reader("image/png", fh) as reader:  # c2pa-python's own reader
        store = json.loads(reader.json())
    manifest = store["manifests"][store["active_manifest"]]
    actions = [a for x in manifest["assertions"] if x["label"].startswith("c2pa.actions")
               for a in x["data"]["actions"]]
    assert [a["action"] for a in actions] == ["c2pa.opened", "c2pa.edited"]
    assert actions[1]["digitalSourceType"] == COMPOSITE
    assert actions[0]["parameters"]["ingredients"]  # the opened action points at the ingredient
    (ingredient,) = manifest["ingredients"]
    assert ingredient["relationship"] == "parentOf" and ingredient["title"].startswith("gen-")
    report = c2pa_mod.read(path, "image/png", trust_anchors_pem=certs["ca"].read_bytes())
    assert report.validation_state == "Trusted" and report.source_type == COMPOSITE and report.says_ai
    assert report.ingredients[0]["relationship"] == "parentOf"
    # a new image is still recorded as created
    path, outputs, _ = _label(tmp_path / "new", size=256, config=config)
    assert c2pa_mod.read(path, "image/png").actions == ["c2pa.created"]


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


def test_stored_watermark_key_lives_in_home_when_artifacts_are_elsewhere(tmp_path):
    """PIXELMILL_ARTIFACTS on a shared mount: the key is still HOME's, the one `pixelmill inspect` reads."""
    from pixelmill.labels import wmkeys

    home, shared = tmp_path / "home", tmp_path / "shared" / "artifacts"
    reg = Registry.from_entry_points()
    reg.register(MakeImage)
    rt = Runtime.create(Settings.from_env(home=home, artifacts=str(shared)), registry=reg)
    try:
        wf = load_text("""
name: key-home
steps:
  - id: gen
    node: test_make_image
    with: {size: 256, format: PNG, kind: scene}
  - id: label
    node: label_ai
    with: {image: "${{ steps.gen.outputs.image }}", prompt: a scene, model: embedded}
outputs: {labels: "${{ steps.label.outputs.labels }}"}
""", "key-home.yaml", rt.registry)
        result = rt.run(wf, {})
        assert result.status is RunStatus.SUCCEEDED, result.error
        assert "watermark" in result.outputs["labels"]
        assert wmkeys.key_file(home).is_file()
        assert not wmkeys.key_file(shared.parent).exists()
    finally:
        rt.close()


def test_labelled_ai_answers_as_inspect_and_falls_back_to_the_other_signals(tmp_path, monkeypatch):
    from pixelmill.labels.inspect import labelled_ai

    monkeypatch.setenv("PIXELMILL_HOME", str(tmp_path))  # where label_ai stored its watermark key
    path, _, _ = _label(tmp_path, size=256)
    assert labelled_ai(path) is True and inspect_file(path)["labelled_ai"] is True
    # the same pixels without the XMP: only the watermark says so now, and the full inspection finds it
    bare = tmp_path / "bare.png"
    with Image.open(path) as im:
        im.convert("RGB").save(bare)
    assert inspect_file(bare, check_c2pa=False)["signals"] == ["watermark"]
    assert labelled_ai(bare) is True
    plain = tmp_path / "plain.png"
    generated_like(256, seed=3).save(plain)
    assert labelled_ai(plain) is False and inspect_file(plain)["labelled_ai"] is False
