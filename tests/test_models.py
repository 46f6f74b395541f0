"""Embedded models, the generate_image and caption nodes, the model manager and the training script.

No model hub: HF_HUB_OFFLINE is set and every model is the shipped one or made here in a temp folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("PIXELMILL_ALLOW_DOWNLOADS", None)

import pytest  # noqa: E402

torch = pytest.importorskip("torch")

from pixelmill.loader import load_file, load_text  # noqa: E402
from pixelmill.models import shapes  # noqa: E402
from pixelmill.models.locate import ENV_EMBEDDED_DIR, ModelNotAvailable, embedded_root  # noqa: E402
from pixelmill.models.manager import SERVICE_KEY, ModelManager  # noqa: E402
from pixelmill.runtime import Runtime  # noqa: E402
from pixelmill.settings import Settings  # noqa: E402
from pixelmill.status import RunStatus  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a large red circle on a blue background"


@pytest.fixture
def rt(tmp_path):
    runtime = Runtime.create(Settings.from_env(home=tmp_path))
    yield runtime
    runtime.close()


def _wf(rt, steps_yaml: str, outputs: str, inputs: str = "{}"):
    text = f"name: t\ninputs: {inputs}\nsteps:\n{steps_yaml}\noutputs: {outputs}\n"
    return load_text(text, "t.yaml", rt.registry)


def _png_hash(rt, ref: dict) -> str:
    path = rt.settings.artifacts_root / ref["run_id"] / ref["name"]
    from PIL import Image

    with Image.open(path) as im:
        return hashlib.sha256(im.convert("RGB").tobytes()).hexdigest()


GEN_STEP = """  - id: gen
    node: generate_image
    config: {{model: {model}}}
    with: {{prompt: "{prompt}", seed: {seed}{extra}}}
"""


def test_embedded_demo_workflow_generates_and_captions(rt):
    wf = load_file(ROOT / "workflows" / "embedded-demo.yaml", rt.registry)
    events = []
    rt.bus.subscribe(events.append)
    result = rt.run(wf, {"seed": 3})
    assert result.status == RunStatus.SUCCEEDED, result.error
    out = result.outputs
    assert out["seed"] == 3
    path = rt.settings.artifacts_root / out["image"]["run_id"] / out["image"]["name"]
    from PIL import Image

    with Image.open(path) as im:
        assert im.size == (32, 32)
        params = im.text["parameters"]
        meta = json.loads(im.text["pixelmill"])
    assert params.startswith(out["prompt"]) and "Seed: 3" in params and "Steps: 20" in params
    assert meta["seed"] == 3 and meta["model"] == "embedded"
    # the caption is a sentence of the embedded vocabulary
    words = set(out["caption"].split())
    assert words and words <= {w for s in shapes.all_specs() for w in s.prompt.split()}, out["caption"]
    from pixelmill.events import EventKind

    progress = [e for e in events if e.kind == EventKind.STEP_PROGRESS and e.step_id == "gen"]
    assert progress, "denoising steps should report progress"


def test_generate_is_reproducible_and_seed_is_drawn(rt):
    steps = GEN_STEP.format(model="embedded", prompt=PROMPT, seed=11, extra="") + \
        "  - id: again\n    node: generate_image\n    with: {prompt: \"" + PROMPT + "\", seed: 11}\n" + \
        "  - id: free\n    node: generate_image\n    with: {prompt: \"" + PROMPT + "\", num_images: 2}\n"
    wf = _wf(rt, steps, "{a: '${{ steps.gen.outputs.image }}', b: '${{ steps.again.outputs.image }}', "
                        "free: '${{ steps.free.outputs }}'}")
    result = rt.run(wf)
    assert result.status == RunStatus.SUCCEEDED, result.error
    assert _png_hash(rt, result.outputs["a"]) == _png_hash(rt, result.outputs["b"])
    free = result.steps["free"].outputs
    assert isinstance(free["seed"], int) and len(free["images"]) == 2
    manager = rt.services.get(SERVICE_KEY)
    assert sum(manager.load_counts.values()) == 1  # three steps, one load


def test_same_seed_same_image_across_processes(rt, tmp_path):
    wf = _wf(rt, GEN_STEP.format(model="embedded", prompt=PROMPT, seed=42, extra=", steps: 8"),
             "{image: '${{ steps.gen.outputs.image }}'}")
    here = _png_hash(rt, rt.run(wf).outputs["image"])
    code = f"""
import hashlib, sys, torch
sys.path.insert(0, {str(ROOT)!r})
from pixelmill.models.loaders import Resolved, load_text2image
from pixelmill.models.locate import embedded_path
from pixelmill_nodes.generate_image import generate
pipe = load_text2image(Resolved('embedded', str(embedded_path('sd')), 'cpu', torch.float32))
img = generate(pipe, prompt={PROMPT!r}, negative_prompt=None, steps=8, guidance=3.0, width=32, height=32,
               seed=42, num_images=1)[0]
print(hashlib.sha256(img.convert('RGB').tobytes()).hexdigest())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == here


def _tiny_sd_folder(folder: Path) -> None:
    """Random tiny components (not the embedded ones) saved as a diffusers folder."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    tok = CLIPTokenizer.from_pretrained(embedded_root() / "sd" / "tokenizer")
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=tok.model_max_length))
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(16, 32), norm_num_groups=8, cross_attention_dim=32,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=2)
    vae = AutoencoderKL(block_out_channels=(8, 16), norm_num_groups=8, latent_channels=4, layers_per_block=1,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                                   scheduler=EulerDiscreteScheduler(steps_offset=1), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder)


def _tiny_blip_folder(folder: Path) -> None:
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipProcessor

    torch.manual_seed(0)
    processor = BlipProcessor.from_pretrained(embedded_root() / "blip")
    tok = processor.tokenizer
    cfg = BlipConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, encoder_hidden_size=32, intermediate_size=37,
                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32,
                         bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, sep_token_id=tok.sep_token_id,
                         pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
    )
    BlipForConditionalGeneration(cfg).save_pretrained(folder)
    processor.save_pretrained(folder)


# a model folder saved with today's diffusers loads without its deprecation notices (issue 9, item 31)
@pytest.mark.filterwarnings("error::FutureWarning:diffusers")
def test_any_model_folder_loads_through_the_same_path(rt, tmp_path):
    sd, blip = tmp_path / "my-sd", tmp_path / "my-blip"
    _tiny_sd_folder(sd)
    _tiny_blip_folder(blip)
    steps = GEN_STEP.format(model=str(sd), prompt="a red circle", seed=1, extra=", steps: 2") + f"""  - id: cap
    node: caption
    config: {{model: {blip}}}
    with: {{images: ['${{{{ steps.gen.outputs.image }}}}', '${{{{ steps.gen.outputs.image }}}}'], max_tokens: 4}}
"""
    wf = _wf(rt, steps, "{texts: '${{ steps.cap.outputs.texts }}', w: '${{ steps.gen.outputs.width }}'}")
    result = rt.run(wf)
    assert result.status == RunStatus.SUCCEEDED, result.error
    assert result.outputs["w"] == 16  # native size of this model: sample_size 8 x VAE factor 2
    assert len(result.outputs["texts"]) == 2
    keys = {k[1] for k in rt.services.get(SERVICE_KEY).load_counts}
    assert keys == {str(sd), str(blip)}


def test_missing_model_fails_offline_with_how_to_get_it(rt):
    steps = GEN_STEP.format(model="someone/not-on-this-machine", prompt="x", seed=1, extra="")
    result = rt.run(_wf(rt, steps, "{}"))
    assert result.status == RunStatus.FAILED
    msg = result.steps["gen"].error["message"]
    assert "pixelmill models pull someone/not-on-this-machine" in msg and "PIXELMILL_ALLOW_DOWNLOADS" in msg
    cap = """  - id: cap
    node: caption
    config: {model: ./no/such/folder}
    with: {image: {kind: artifact, run_id: r, name: x.png}}
"""
    result = rt.run(_wf(rt, cap, "{}"))
    assert result.status == RunStatus.FAILED


def test_one_load_under_concurrent_runs(tmp_path):
    rt = Runtime.create(Settings.from_env(home=tmp_path, max_workers=4))
    try:
        wf = _wf(rt, GEN_STEP.format(model="embedded", prompt=PROMPT, seed="'${{ inputs.s }}'", extra=", steps: 2"),
                 "{seed: '${{ steps.gen.outputs.seed }}'}", inputs="{s: {type: integer}}")
        results = []
        threads = [threading.Thread(target=lambda i=i: results.append(rt.run(wf, {"s": i}))) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert sorted(r.outputs["seed"] for r in results) == [0, 1, 2, 3]
        assert list(rt.services.get(SERVICE_KEY).load_counts.values()) == [1]
    finally:
        rt.close()


def test_manager_loads_once_per_key_across_threads_and_unloads_lru_and_idle():
    now = [0.0]
    manager = ModelManager(budget_bytes=3 * 4000, idle_timeout_s=0, clock=lambda: now[0])
    calls = []

    def loader(name):
        def load():
            calls.append(name)
            time.sleep(0.05)
            return torch.nn.Linear(1000, 1, bias=False)  # 4000 bytes
        return load

    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        with manager.use(("a",), loader("a")):
            time.sleep(0.01)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["a"]
    for name in "bc":
        now[0] += 1
        manager.get((name,), loader(name))
    now[0] += 1
    manager.get(("a",), loader("a"))  # 'a' becomes most recent; 'b' is now the oldest
    with manager.use(("b",), loader("b")):
        now[0] += 1
        manager.get(("d",), loader("d"))  # over budget: 'c' goes, 'b' is in use and stays
    assert [k for k, why in manager.unloads] == [("c",)]
    assert {e["key"] for e in manager.loaded()} == {("a",), ("b",), ("d",)}
    manager.idle_timeout_s = 10
    now[0] += 11
    manager.sweep()
    assert manager.loaded() == []
    manager.get(("a",), loader("a"))
    assert calls.count("a") == 2  # loaded again after the unload
    manager.close()


def test_embedded_dir_env_override_and_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_EMBEDDED_DIR, str(tmp_path / "nope"))
    with pytest.raises(ModelNotAvailable, match=ENV_EMBEDDED_DIR):
        embedded_root()
    (tmp_path / "emb" / "sd").mkdir(parents=True)
    monkeypatch.setenv(ENV_EMBEDDED_DIR, str(tmp_path / "emb"))
    from pixelmill.models.locate import embedded_path

    with pytest.raises(ModelNotAvailable, match="incomplete"):
        embedded_path("sd")


def test_models_cli_lists_embedded(tmp_path):
    from click.testing import CliRunner

    from pixelmill.cli import main

    res = CliRunner().invoke(main, ["models", "list", "--json"], env={"HF_HOME": str(tmp_path / "hf")})
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert {row["kind"] for row in data["embedded"]} == {"text-to-image", "captioning"}
    assert data["cache"] == []


def test_training_script_smoke(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_embedded.py"), "--out", str(tmp_path), "--smoke"],
                         capture_output=True, text=True, timeout=240, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    for rel in ("sd/model_index.json", "sd/unet/diffusion_pytorch_model.safetensors", "sd/tokenizer/vocab.json",
                "sd/tokenizer/merges.txt", "sd/pixelmill.json", "blip/model.safetensors", "blip/vocab.txt",
                "blip/processor_config.json"):
        assert (tmp_path / rel).is_file(), rel
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(tmp_path / "sd", local_files_only=True)
    cfg = pipe.scheduler.config
    assert cfg.steps_offset == 1 and cfg.prediction_type == "v_prediction" and cfg.beta_schedule == "squaredcos_cap_v2"
    stats = json.loads((tmp_path / "vae-stage" / "stats.json").read_text())
    assert pipe.vae.config.scaling_factor == pytest.approx(stats["scaling_factor"])
    assert pipe.tokenizer(PROMPT).input_ids.__len__() == len(PROMPT.split()) + 2  # one token per word


def test_caption_prefix_beam_search_and_batch(rt):
    steps = GEN_STEP.format(model="embedded", prompt=PROMPT, seed=5, extra=", num_images: 2") + """  - id: cap
    node: caption
    with: {images: '${{ steps.gen.outputs.images }}', prefix: "a large", num_beams: 2}
"""
    result = rt.run(_wf(rt, steps, "{texts: '${{ steps.cap.outputs.texts }}'}"))
    assert result.status == RunStatus.SUCCEEDED, result.error
    texts = result.outputs["texts"]
    assert len(texts) == 2 and all(t.startswith("a large ") for t in texts), texts


def test_models_pull_offline_says_what_is_needed(tmp_path):
    from click.testing import CliRunner

    from pixelmill.cli import main

    res = CliRunner().invoke(main, ["models", "pull", "someone/some-model"],
                             env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
    assert res.exit_code == 1
    assert "could not download 'someone/some-model'" in res.output and "internet" in res.output
