#!/usr/bin/env python
"""Quality of the embedded models, measured with the deterministic pixel checker (no learned judge).

Prints, with the shipped call settings unless overridden:
  1. image generator on the HELD-OUT (colour, shape, background) combinations, both sizes, several
     seeds: shape colour, background colour, shape class, size, all four  (targets 98/98/90/-/85 %)
  2. the same on a sample of training combinations (for comparison)
  3. captioner exact match on fresh real synthetic images, every combination  (target 97 %)
  4. captioner text == prompt on the generated held-out images  (target 80 %)

    python bench/embedded_quality.py [--seeds 3] [--steps 20] [--guidance 3] [--scheduler default]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "nodes"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pixelmill.models import shapes  # noqa: E402
from pixelmill.models.loaders import Resolved, load_captioner, load_text2image  # noqa: E402
from pixelmill.models.locate import embedded_path, recommended  # noqa: E402


def score(readings_specs):
    keys = ["color", "background", "shape", "size", "all"]
    hits = {k: 0 for k in keys}
    for reading, spec in readings_specs:
        for k, v in reading.matches(spec).items():
            hits[k] += v
    n = max(1, len(readings_specs))
    return {k: hits[k] / n for k in keys}, len(readings_specs)


def fmt(res, n):
    return (f"colour {res['color']:6.1%}  background {res['background']:6.1%}  shape {res['shape']:6.1%}  "
            f"size {res['size']:6.1%}  all {res['all']:6.1%}   (n={n})")


def main() -> int:
    from caption import caption_images
    from generate_image import generate  # the node's own call path

    ap = argparse.ArgumentParser()
    ap.add_argument("--sd", default=None, help="pipeline folder (default: embedded)")
    ap.add_argument("--blip", default=None, help="captioner folder (default: embedded)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--scheduler", default="default")
    ap.add_argument("--train-sample", type=int, default=48, help="training prompts to score for comparison")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sd = args.sd or str(embedded_path("sd"))
    blip = args.blip or str(embedded_path("blip"))
    defaults = recommended("embedded", sd)
    steps = args.steps or defaults["steps"]
    guidance = args.guidance if args.guidance is not None else defaults["guidance"]
    pipe = load_text2image(Resolved("embedded", sd, "cpu", torch.float32))
    cap = load_captioner(Resolved("embedded", blip, "cpu", torch.float32))
    print(f"sd={sd}\nblip={blip}\nsettings: steps={steps} guidance={guidance} scheduler={args.scheduler} "
          f"size={defaults['width']}x{defaults['height']} seeds/prompt={args.seeds}")

    def run_specs(spec_list, seed_base):
        out, images = [], []
        for i, spec in enumerate(spec_list):
            for s in range(args.seeds):
                img = generate(pipe, prompt=spec.prompt, negative_prompt=None, steps=steps, guidance=guidance,
                               width=defaults["width"], height=defaults["height"], seed=seed_base + 1000 * s + i,
                               num_images=1, scheduler=args.scheduler)[0]
                out.append((shapes.read_image(img), spec))
                images.append((img, spec))
        return out, images

    t0 = time.time()
    held, held_images = run_specs(shapes.eval_specs(), 0)
    res, n = score(held)
    t_gen = time.time() - t0
    print(f"1. generator, held-out combinations: {fmt(res, n)}  [{t_gen / n * 1000:.0f} ms/image]")
    misses = [(r, s) for r, s in held if not r.matches(s)["all"]]
    for r, s in misses[:8]:
        print(f"     miss: wanted '{s.prompt}', read '{r.prompt}'")
    rng = np.random.RandomState(7)
    train = shapes.train_specs()
    sample = [train[i] for i in rng.choice(len(train), size=min(args.train_sample, len(train)), replace=False)]
    tr, _ = run_specs(sample, 50000)
    print(f"2. generator, training combinations: {fmt(*score(tr))}")

    fresh, fresh_specs = shapes.dataset(shapes.all_specs(), len(shapes.all_specs()), seed=987654)
    from PIL import Image

    pil = [Image.fromarray(a) for a in fresh]
    t0 = time.time()
    texts = []
    for i in range(0, len(pil), 64):
        texts += caption_images(cap, pil[i:i + 64])
    t_cap = (time.time() - t0) / len(pil)
    exact = np.mean([t == s.prompt for t, s in zip(texts, fresh_specs, strict=True)])
    held_set = set(shapes.held_out_triples())
    exact_held = np.mean([t == s.prompt for t, s in zip(texts, fresh_specs, strict=True) if (s.color, s.shape, s.background) in held_set])
    print(f"3. captioner exact match, fresh real images: {exact:6.1%} (n={len(pil)}; held-out combos {exact_held:6.1%})"
          f"  [{t_cap * 1000:.1f} ms/image batched]")
    for t, s in [(t, s) for t, s in zip(texts, fresh_specs, strict=True) if t != s.prompt][:5]:
        print(f"     miss: '{s.prompt}' -> '{t}'")
    gtexts = []
    for i in range(0, len(held_images), 64):
        gtexts += caption_images(cap, [im for im, _ in held_images[i:i + 64]])
    eq = np.mean([t == s.prompt for t, (_, s) in zip(gtexts, held_images, strict=True)])
    agree = np.mean([t == r.prompt for t, (r, _) in zip(gtexts, held, strict=True)])
    print(f"4. captioner text == prompt on generated held-out images: {eq:6.1%} (n={len(gtexts)}); "
          f"== the pixel checker's reading: {agree:6.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
