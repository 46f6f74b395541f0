#!/usr/bin/env python
"""generate_image node vs a raw diffusers call on full-size SD 1.5 and SDXL architectures.

The architectures come from their published configs, kept in bench/configs/*.json; the weights are random
(no model hub: the cost of a denoising step does not depend on the weight values). The node and the raw
call share one pipeline object (the node finds it in its model manager), so the comparison is of the node's
own overhead. Per architecture, precision and compile setting it prints seconds per image, iterations per
second, the node/raw ratio, the peak GPU memory, the first call (compilation when on) and the time the node
spends writing its PNG (random weights give noise, the worst case to compress).

    python bench/gpu.py                         # CUDA: SD 1.5 512x512 50 steps, SDXL 1024x1024 30 steps,
                                                #       float16 and bfloat16, without and with compile
    python bench/gpu.py --arch sd15 --dtype float16 --compile no --reps 3
    python bench/gpu.py                         # no CUDA: a tiny-size smoke test of the same code path

Published anchors (diffusers docs): SD 1.5, 50 steps, A100, compiled: 1.07 s; SDXL, 30 steps, A100,
bf16 + compile: 2.54 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

PROMPT = "a photograph of an astronaut riding a horse on the moon, detailed, sharp focus"


def _config(arch: str, tiny: bool) -> dict:
    cfg = json.loads((ROOT / "bench" / "configs" / f"{arch}.json").read_text())
    if tiny:
        for part, override in cfg["tiny"].items():
            cfg[part] = {**cfg[part], **override}
        cfg["size"] = cfg["unet"]["sample_size"] * 2 ** (len(cfg["vae"]["block_out_channels"]) - 1)
        cfg["steps"] = 2
    return cfg


def build(arch: str, tiny: bool, dtype, device: str = "cpu"):
    """The pipeline of ``arch`` with random weights, and a folder holding only its model_index.json and
    scheduler config (what the node reads before it asks its manager for the model). The weights are
    initialised on ``device`` (random initialisation of a few billion parameters takes minutes on a CPU)."""
    import diffusers
    import transformers

    from pixelmill.models.locate import embedded_root

    cfg = _config(arch, tiny)
    torch.manual_seed(0)
    tok = transformers.CLIPTokenizer.from_pretrained(embedded_root() / "sd" / "tokenizer")
    tok.model_max_length = 77

    def text(part):
        c = dict(cfg[part])
        cls = getattr(transformers, c.pop("class"))
        return cls(transformers.CLIPTextConfig(**c))

    sched = dict(cfg["scheduler"])
    scheduler = getattr(diffusers, sched.pop("class"))(**sched)
    with torch.device(device):
        parts = dict(vae=diffusers.AutoencoderKL(**cfg["vae"]), unet=diffusers.UNet2DConditionModel(**cfg["unet"]),
                     text_encoder=text("text_encoder"), tokenizer=tok, scheduler=scheduler)
        if "text_encoder_2" in cfg:
            parts.update(text_encoder_2=text("text_encoder_2"), tokenizer_2=tok)
    if "text_encoder_2" not in cfg:
        parts.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe = getattr(diffusers, cfg["pipeline"])(**parts).to(dtype=dtype)
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{arch}-"))
    index = {"_class_name": cfg["pipeline"], "_diffusers_version": diffusers.__version__}
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "scheduler").mkdir()
    scheduler.save_config(folder / "scheduler")
    return pipe, folder, cfg


def run_one(arch: str, dtype_name: str, compile_: bool, device: str, reps: int, tiny: bool) -> dict:
    from pixelmill.models.gpu import apply_serving_options
    from pixelmill.models.loaders import resolve_model
    from pixelmill.models.manager import SERVICE_KEY, ModelManager
    from pixelmill.node import NodeContext, Services
    from pixelmill_nodes.generate_image import GenerateImageNode, save_png

    dtype = getattr(torch, dtype_name)
    pipe, folder, cfg = build(arch, tiny, dtype, device)
    node_cfg = GenerateImageNode.Config(model=str(folder), device=device, dtype=dtype_name, compile=compile_)
    pipe.set_progress_bar_config(disable=True)
    pipe = apply_serving_options(pipe, device, node_cfg)
    r = resolve_model(node_cfg.model, "sd", node_cfg.device, node_cfg.dtype)
    manager = ModelManager(idle_timeout_s=0)
    manager.get(("text2image", *r.key, *node_cfg.load_options()), lambda: pipe)
    services = Services({SERVICE_KEY: manager})
    out_dir = Path(tempfile.mkdtemp(prefix="bench-gpu-out-"))
    node = GenerateImageNode(node_cfg)
    size, steps, guidance = cfg["size"], cfg["steps"], cfg["guidance"]
    inputs = GenerateImageNode.Inputs(prompt=PROMPT, seed=1, steps=steps, guidance=guidance, width=size, height=size)

    def node_call():
        ctx = NodeContext(run_id="bench", step_id="gen", workflow="bench", artifacts_root=out_dir, secrets=None,
                          services=services)
        node.run(inputs, ctx)

    last = {}

    def raw_call():
        g = torch.Generator("cpu").manual_seed(1)
        with torch.inference_mode():
            last["image"] = pipe(prompt=PROMPT, num_inference_steps=steps, guidance_scale=guidance, width=size,
                                 height=size, generator=g, output_type="pil").images[0]

    cuda = device.startswith("cuda")

    def timed(fn):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    def raw_png_call():  # a raw script that keeps its picture: the same call, then the same PNG write
        raw_call()
        save_png(last["image"], out_dir / "raw.png", png_params)

    png_params = {"prompt": PROMPT, "steps": steps, "scheduler": type(pipe.scheduler).__name__,
                  "guidance": guidance, "seed": 1, "width": size, "height": size, "model": arch}
    warm = timed(raw_call)  # compiles at this size when compile is on
    timed(node_call)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    calls = {"node": node_call, "raw": raw_call, "raw_png": raw_png_call}
    times: dict[str, list[float]] = {k: [] for k in calls}
    for rep in range(reps):  # interleaved, the order rotated each repetition
        order = list(calls)[rep % 3:] + list(calls)[:rep % 3]
        for name in order:
            times[name].append(timed(calls[name]))
    n, w, wp = (statistics.median(times[k]) for k in ("node", "raw", "raw_png"))
    t0 = time.perf_counter()  # the node's one extra job: writing the PNG artifact (random weights give noise,
    save_png(last["image"], out_dir / "png-cost.png", png_params)  # the worst case to compress)
    png = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    row = {"arch": arch, "dtype": dtype_name, "compile": compile_, "size": size, "steps": steps, "node_s": n,
           "raw_s": w, "raw_png_s": wp, "it_s": steps / n, "ratio": n / w, "ratio_png": n / wp, "peak_gib": peak,
           "first_call_s": warm, "png_s": png}
    manager.close()
    if cuda:
        torch.cuda.empty_cache()
    return row


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="sd15,sdxl")
    ap.add_argument("--dtype", default="float16,bfloat16")
    ap.add_argument("--compile", default="no,yes", help="no, yes or both (no,yes)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    tiny = not device.startswith("cuda")
    dtypes = ["float32"] if tiny else args.dtype.split(",")
    compiles = [False] if tiny else [c == "yes" for c in args.compile.split(",")]
    where = torch.cuda.get_device_name(device) if not tiny else "CPU (tiny-size smoke test, not a speed figure)"
    print(f"device: {where}; torch {torch.__version__}; reps {args.reps}")
    print(f"{'arch':<6}{'dtype':<10}{'compile':<9}{'size':>6}{'steps':>6}{'node s/img':>12}{'raw s/img':>11}"
          f"{'raw+PNG s':>11}{'it/s':>8}{'node/raw':>10}{'node/raw+PNG':>14}{'peak GiB':>10}{'1st call s':>12}"
          f"{'PNG s':>8}")
    for arch in args.arch.split(","):
        for dtype_name in dtypes:
            for compile_ in compiles:
                r = run_one(arch, dtype_name, compile_, device, args.reps, tiny)
                print(f"{r['arch']:<6}{r['dtype']:<10}{str(r['compile']):<9}{r['size']:>6}{r['steps']:>6}"
                      f"{r['node_s']:>12.3f}{r['raw_s']:>11.3f}{r['raw_png_s']:>11.3f}{r['it_s']:>8.2f}"
                      f"{r['ratio']:>10.3f}{r['ratio_png']:>14.3f}"
                      f"{r['peak_gib']:>10.2f}{r['first_call_s']:>12.2f}{r['png_s']:>8.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
