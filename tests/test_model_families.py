"""Every model family the nodes claim, built as tiny random-weight folders here and run through the nodes.

Captioners: BLIP, BLIP-2, GIT, a LLaVA-style model, and a ViT-GPT2 captioner that must be refused.
Text-to-image: SD 1.5 with its safety checker, SD with LCM / turbo-style / PNDM schedulers, SDXL, SD3,
Flux, PixArt-alpha, PixArt-sigma, Sana. No model hub: the folders are built once per session.
"""

from __future__ import annotations

import json
import os
import shutil

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("PIXELMILL_ALLOW_DOWNLOADS", None)

import pytest  # noqa: E402

torch = pytest.importorskip("torch")

from pixelmill.events import EventKind  # noqa: E402
from pixelmill.loader import load_text  # noqa: E402
from pixelmill.models import families  # noqa: E402
from pixelmill.models.loaders import pick_dtype  # noqa: E402
from pixelmill.models.manager import SERVICE_KEY, ModelManager, estimate_bytes  # noqa: E402
from pixelmill.models.memory import estimate_folder_bytes  # noqa: E402
from pixelmill.runtime import Runtime  # noqa: E402
from pixelmill.settings import Settings  # noqa: E402
from pixelmill.status import RunStatus  # noqa: E402

from . import tiny_models as tm  # noqa: E402

BUILDERS = {
    "blip": tm.blip, "blip2": tm.blip2, "git": tm.git, "llava": tm.llava, "vit_gpt2": tm.vit_gpt2,
    "sd15": lambda f: tm.sd(f, safety_checker=True), "lcm": lambda f: tm.sd(f, "lcm"),
    "turbo": lambda f: tm.sd(f, "turbo"), "pndm": lambda f: tm.sd(f, "pndm"),
    "sdjson": lambda f: tm.sd(f, pixelmill_json={"defaults": {"steps": 3, "guidance": 2.0}}),
    "sd_fp16_variant": lambda f: tm.sd(f, variant="fp16"),
    "sdxl": tm.sdxl, "sd3": tm.sd3, "flux": tm.flux, "schnell": lambda f: tm.flux(f, guidance_embeds=False),
    "pixart_alpha": tm.pixart, "pixart_sigma": lambda f: tm.pixart(f, sigma=True), "sana": tm.sana,
}


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-models")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    runtime = Runtime.create(Settings.from_env(home=tmp_path_factory.mktemp("home")))
    yield runtime
    runtime.close()


def _run(rt, step_yaml: str):
    wf = load_text(f"name: t\nsteps:\n{step_yaml}\noutputs: {{}}\n", "t.yaml", rt.registry)
    events = []
    unsubscribe = rt.bus.subscribe(events.append)
    try:
        result = rt.run(wf)
    finally:
        if callable(unsubscribe):
            unsubscribe()
    return result, [e for e in events if e.run_id == result.run_id]


def _gen(rt, folder, extra: str = "", config: str = "", prompt: str = "a red circle"):
    step = (f"  - id: gen\n    node: generate_image\n    config: {{model: '{folder}'{config}}}\n"
            f"    with: {{prompt: '{prompt}', seed: 1{extra}}}\n")
    return _run(rt, step)


def _error(result) -> str:
    assert result.status == RunStatus.FAILED, "the step should have failed"
    return result.steps["gen" if "gen" in result.steps else "cap"].error["message"]


# ------------------------------------------------------------------ captioning


@pytest.fixture(scope="module")
def image_ref(rt):
    from PIL import Image

    folder = rt.settings.artifacts_root / "fixture"
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), (200, 20, 20)).save(folder / "red.png")
    return "{kind: artifact, run_id: fixture, name: red.png}"


def _caption(rt, folder, image_ref, extra=""):
    return _run(rt, f"  - id: cap\n    node: caption\n    config: {{model: '{folder}'}}\n"
                    f"    with: {{images: [{image_ref}, {image_ref}], max_tokens: 4{extra}}}\n")


@pytest.mark.parametrize("name,cls", [("blip", "BlipForConditionalGeneration"),
                                      ("blip2", "Blip2ForConditionalGeneration"),
                                      ("git", "GitForCausalLM"), ("llava", "LlavaForConditionalGeneration")])
def test_captioner_loads_through_its_own_class(rt, folders, image_ref, name, cls):
    extra = ", instruction: 'Describe the picture.'" if name == "llava" else ""
    result, _ = _caption(rt, folders[name], image_ref, extra)
    assert result.status == RunStatus.SUCCEEDED, result.error
    assert len(result.steps["cap"].outputs["texts"]) == 2
    manager = rt.services.get(SERVICE_KEY)
    loaded = [e for e in manager._entries.values() if e.key[1] == str(folders[name])]
    assert loaded and type(loaded[0].value.model).__name__ == cls


def test_caption_prefix_starts_the_caption(rt, folders, image_ref):
    for name in ("git", "llava"):
        result, _ = _caption(rt, folders[name], image_ref, ", prefix: 'a red'")
        assert result.status == RunStatus.SUCCEEDED, result.error
        assert all(t.startswith("a red") for t in result.steps["cap"].outputs["texts"])


def test_unsupported_captioner_is_refused_in_one_sentence(rt, folders, image_ref):
    result, _ = _caption(rt, folders["vit_gpt2"], image_ref)
    msg = _error(result)
    assert "'vision-encoder-decoder' model (VisionEncoderDecoderModel)" in msg
    assert "supported architectures: BLIP (blip), BLIP-2 (blip-2), GIT (git) and LLaVA" in msg
    assert "Traceback" not in msg


def test_checkpoint_missing_weights_is_refused_not_filled_at_random(rt, folders, image_ref, tmp_path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "blip2-partial"
    shutil.copytree(folders["blip2"], broken)
    weights = load_file(broken / "model.safetensors")
    kept = {k: v for k, v in weights.items() if not k.startswith("language_model")}
    assert len(kept) < len(weights)
    save_file(kept, broken / "model.safetensors", metadata={"format": "pt"})
    result, _ = _caption(rt, broken, image_ref)
    msg = _error(result)
    assert "does not hold" in msg and "BLIP-2" in msg and "refuses to fill them at random" in msg


# ------------------------------------------------------------------ text-to-image


def _out(result):
    assert result.status == RunStatus.SUCCEEDED, result.error
    return result.steps["gen"].outputs


def test_sd15_with_safety_checker_native_size(rt, folders):
    out = _out(_gen(rt, folders["sd15"], ", steps: 2")[0])
    # native size: UNet sample size 16 x VAE scale factor 2
    assert (out["width"], out["height"]) == (32, 32) and out["steps"] == 2


def test_defaults_from_scheduler_json_and_pipeline(rt, folders):
    lcm = _out(_gen(rt, folders["lcm"])[0])
    assert (lcm["steps"], lcm["guidance"], lcm["settings_from"]) == (4, 1.0, "LCM scheduler")
    turbo = _out(_gen(rt, folders["turbo"])[0])
    assert (turbo["steps"], turbo["guidance"]) == (1, 0.0) and turbo["settings_from"].startswith("turbo")
    own = _out(_gen(rt, folders["sdjson"])[0])
    assert (own["steps"], own["guidance"], own["settings_from"]) == (3, 2.0, "pixelmill.json")
    schnell = _out(_gen(rt, folders["schnell"], ", width: 32, height: 32")[0])
    assert (schnell["steps"], schnell["guidance"]) == (4, 0.0)
    # no file, no telling scheduler: the pipeline's own call defaults
    from diffusers import StableDiffusion3Pipeline, StableDiffusionPipeline

    for key, cls, expected in (("sd15", StableDiffusionPipeline, (50, 7.5)),
                               ("sd3", StableDiffusion3Pipeline, (28, 7.0))):
        pipe = cls.from_pretrained(folders[key])
        d, why = families.recommended_settings(str(folders[key]), families.family_of(cls.__name__), pipe, None, None)
        assert (d["steps"], d["guidance"], why) == (*expected, "pipeline defaults")


def test_progress_never_passes_its_total(rt, folders):
    result, events = _gen(rt, folders["pndm"], ", steps: 3")
    _out(result)
    progress = [e.data for e in events if e.kind == EventKind.STEP_PROGRESS and e.data.get("total")]
    assert progress and all(p["value"] <= p["total"] for p in progress), progress


@pytest.mark.parametrize("name", ["sdxl", "sd3", "pixart_alpha", "pixart_sigma", "sana"])
def test_family_runs_without_a_negative_prompt(rt, folders, name):
    out = _out(_gen(rt, folders[name], ", steps: 2, width: 32, height: 32")[0])
    assert (out["width"], out["height"]) == (32, 32)


def test_pixart_and_sd3_take_a_negative_prompt(rt, folders):
    for name in ("pixart_alpha", "sd3"):
        _out(_gen(rt, folders[name], ", steps: 2, width: 32, height: 32, negative_prompt: blurry")[0])
    msg = _error(_gen(rt, folders["pixart_alpha"], ", steps: 1, width: 32, height: 32")[0])
    assert "use 2 or more steps" in msg


def test_flux_sizes_negative_prompt_and_scheduler(rt, folders):
    out = _out(_gen(rt, folders["flux"], ", steps: 1")[0])
    # diffusers' default: default_sample_size 128 x VAE scale factor 2
    assert (out["width"], out["height"]) == (256, 256) and out["guidance"] == 3.5
    out = _out(_gen(rt, folders["flux"], ", steps: 1, width: 42, height: 40")[0])
    assert (out["width"], out["height"]) == (44, 40)  # multiple of 4 here (VAE factor 2 x packing 2)
    assert any("generating 44x40" in w for w in out["warnings"])
    msg = _error(_gen(rt, folders["flux"], ", steps: 1, negative_prompt: blurry")[0])
    assert "Flux is guidance-distilled" in msg
    msg = _error(_gen(rt, folders["flux"], ", steps: 1", config=", scheduler: dpm++")[0])
    assert "does not fit" in msg and "FlowMatchEulerDiscreteScheduler" in msg


def test_sana_size_rounded_to_its_multiple(rt, folders):
    out = _out(_gen(rt, folders["sana"], ", steps: 1")[0])
    assert (out["width"], out["height"]) == (32, 32)  # native 16, Sana needs multiples of 32
    assert out["warnings"]


def test_long_prompt_is_warned_in_step_events(rt, folders):
    long = " ".join(["red circle"] * 60)
    result, events = _gen(rt, folders["sd3"], ", steps: 1, width: 32, height: 32", prompt=long)
    out = _out(result)
    assert any("CLIP text encoder reads only the first 77" in w for w in out["warnings"])
    messages = [e.data.get("message", "") for e in events if e.kind == EventKind.STEP_PROGRESS]
    assert any("reads only the first 77" in m for m in messages), messages


def test_family_precision_on_cuda():
    fam = families.family_of
    assert pick_dtype("cuda", "auto", fam("FluxPipeline").cuda_dtype) == torch.bfloat16
    assert pick_dtype("cuda:1", "auto", fam("StableDiffusion3Pipeline").cuda_dtype) == torch.bfloat16
    assert pick_dtype("cuda", "auto", fam("StableDiffusionXLPipeline").cuda_dtype) == torch.float16
    assert pick_dtype("cpu", "auto", fam("FluxPipeline").cuda_dtype) == torch.float32


def test_device_option_accepts_cuda_n_only():
    from pixelmill.models.options import PipelineOptions

    assert PipelineOptions(device="cuda:1").device == "cuda:1"
    with pytest.raises(ValueError):
        PipelineOptions(device="gpu0")


# ------------------------------------------------------------------ serving options


def _loaded(rt, folder):
    manager = rt.services.get(SERVICE_KEY)
    return [e.value for e in manager._entries.values() if e.loaded and e.key[1] == str(folder)]


def test_variant_weights_when_present_and_vae_options(rt, folders):
    # a folder with only fp16-variant files loads with variant: fp16 (and not without it)
    _out(_gen(rt, folders["sd_fp16_variant"], ", steps: 1", config=", variant: fp16")[0])
    assert "could not be loaded" in _error(_gen(rt, folders["sd_fp16_variant"], ", steps: 1")[0])
    # a folder without the variant falls back to its plain weights
    _out(_gen(rt, folders["pndm"], ", steps: 1", config=", variant: fp16, vae_tiling: true, vae_slicing: true")[0])
    pipes = [p for p in _loaded(rt, folders["pndm"]) if p.vae.use_tiling]
    assert pipes and pipes[0].vae.use_slicing


def test_compile_option_wraps_the_denoiser_channels_last(folders):
    """Only the wrapping is checked here: compiling itself happens on the first call (bench/gpu.py, CUDA)."""
    from pixelmill.models.gpu import apply_serving_options
    from pixelmill.models.loaders import Resolved, load_text2image
    from pixelmill.models.options import PipelineOptions

    r = Resolved("sd", str(folders["pndm"]), "cpu", torch.float32, "StableDiffusionPipeline")
    pipe = apply_serving_options(load_text2image(r), "cpu", PipelineOptions(compile=True))
    assert type(pipe.unet).__name__ == "OptimizedModule"
    assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert families.native_size(pipe) == 32  # the node still reads the wrapped model's config


def test_cpu_offload_needs_cuda(rt, folders):
    msg = _error(_gen(rt, folders["pndm"], ", steps: 1", config=", device: cpu, cpu_offload: model")[0])
    assert "cpu_offload: model needs a CUDA device" in msg


def test_missing_model_with_downloads_on_does_not_say_they_are_off(monkeypatch):
    from pixelmill.models.locate import not_available_message

    monkeypatch.setenv("PIXELMILL_ALLOW_DOWNLOADS", "1")
    msg = not_available_message("someone/model", "text-to-image", OSError("connection refused"))
    assert "could not be downloaded" in msg and "downloads are off" not in msg
    monkeypatch.delenv("PIXELMILL_ALLOW_DOWNLOADS")
    assert "downloads are off" in not_available_message("someone/model", "text-to-image")


# ------------------------------------------------------------------ memory


def test_header_estimate_matches_loaded_size(folders):
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(folders["sdxl"])
    # the loaded pipeline also holds a few non-persistent buffers (CLIP position ids) that are not in the files
    assert estimate_folder_bytes(str(folders["sdxl"]), 4) == pytest.approx(estimate_bytes(pipe), rel=0.01)
    assert estimate_folder_bytes(str(folders["sdxl"]), 2) == pytest.approx(estimate_bytes(pipe) / 2, rel=0.01)


def test_room_is_made_before_loading_and_an_oversize_model_stays():
    manager = ModelManager(budget_bytes=6000, idle_timeout_s=0)
    resident_at_load = []

    def loader(name):
        def load():
            resident_at_load.append((name, sorted(e["key"][0] for e in manager.loaded())))
            return torch.nn.Linear(1000, 1, bias=False)  # 4000 bytes
        return load

    manager.get(("a",), loader("a"))
    with manager.use(("b",), loader("b"), estimate=4000):
        pass
    assert resident_at_load[-1] == ("b", [])  # 'a' went before 'b' loaded: never both resident
    warnings = []
    big = lambda: torch.nn.Linear(3000, 1, bias=False)  # noqa: E731 - 12000 bytes
    for _ in range(2):
        with manager.use(("big",), big, estimate=12000, warn=warnings.append):
            pass
    assert manager.load_counts[("big",)] == 1  # not reloaded on every run
    assert len(warnings) == 1 and "more than the model memory budget" in warnings[0]
    manager.close()


def test_an_estimate_function_is_read_only_when_the_model_loads():
    manager = ModelManager(budget_bytes=6000, idle_timeout_s=0)
    calls = []

    def estimate():
        calls.append(1)
        return 4000

    manager.get(("a",), lambda: torch.nn.Linear(1000, 1, bias=False))
    for _ in range(3):
        with manager.use(("b",), lambda: torch.nn.Linear(1000, 1, bias=False), estimate=estimate):
            pass
    assert len(calls) == 1 and not any(e["key"] == ("a",) for e in manager.loaded())  # room made once
    manager.close()


def test_pull_patterns_follow_model_index(folders):
    from pixelmill.cli.models import pull_patterns

    index = json.loads((folders["sdxl"] / "model_index.json").read_text())
    patterns = pull_patterns(index, variant="fp16")
    assert "model_index.json" in patterns and "unet/*.fp16.safetensors" in patterns
    assert "text_encoder_2/*.json" in patterns and not any(p.startswith("safety_checker") for p in patterns)
    assert not any(p.endswith(".bin") or p.endswith(".ckpt") for p in patterns)
