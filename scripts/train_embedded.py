#!/usr/bin/env python
"""Train the embedded offline models from scratch on the procedural shapes world.

Writes a stock diffusers ``StableDiffusionPipeline`` folder (tiny VAE, CLIP text encoder, UNet,
DPM++ scheduler) to ``OUT/sd`` and a stock transformers ``BlipForConditionalGeneration`` folder
(with its ``BlipProcessor``) to ``OUT/blip``; both load with ``from_pretrained`` and nothing else.

Seeded and deterministic for a given ``--threads``. Stages (``--part``):
  vae   autoencoder, 32x32 RGB <-> 4x8x8 latents; its latent scaling factor is measured and saved
  sd    text encoder + UNet, v-prediction on a squaredcos_cap_v2 schedule, trained with the
        pipeline's own prompt padding; a fixed set of (colour, shape, background) combinations is
        held out (pixelmill.models.shapes.held_out_triples) for evaluation only
  blip  captioner, trained on EVERY caption (held-out combinations included), on real images and
        on the same images passed through the VAE so it also reads generated pictures
  all   the three in order (sd and blip need the vae folder)

    python scripts/train_embedded.py --out models/embedded            # full recipe
    python scripts/train_embedded.py --out /tmp/x --smoke             # a few steps of everything
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pixelmill.models import shapes  # noqa: E402

MAX_TOKENS = 16  # prompt length the text encoder and the pipeline pad to


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))


def words() -> list[str]:
    vocab = set()
    for spec in shapes.all_specs():
        vocab.update(spec.prompt.split())
    return sorted(vocab)


# ------------------------------------------------------------------ tokenizers


def bpe_merges(word_list: list[str]) -> list[tuple[str, str]]:
    """Byte-pair merges learned the classic way, ties broken by the pair's text (deterministic), until
    every word is one token. Applying them in rank order spells each training word as one token."""
    words_ = {w: [*w[:-1], w[-1] + "</w>"] for w in word_list}
    merges: list[tuple[str, str]] = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for parts in words_.values():
            for pair in zip(parts, parts[1:], strict=False):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            return merges
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        for w, parts in words_.items():
            out, k = [], 0
            while k < len(parts):
                if k + 1 < len(parts) and (parts[k], parts[k + 1]) == best:
                    out.append(parts[k] + parts[k + 1])
                    k += 2
                else:
                    out.append(parts[k])
                    k += 1
            words_[w] = out


def build_clip_tokenizer():
    """A CLIP BPE tokenizer whose merges spell every word of the shapes world as one token."""
    from transformers import CLIPTokenizer

    fixed = Path(__file__).resolve().parent / "embedded_tokenizer"
    if (fixed / "vocab.json").is_file() and (fixed / "merges.txt").is_file():
        # the vocabulary the shipped model was trained with (learned once by the `tokenizers` BPE trainer,
        # whose tie-breaking differs from run to run; fixed here so that a rerun reproduces the model)
        vocab = json.loads((fixed / "vocab.json").read_text())
        lines = [ln for ln in (fixed / "merges.txt").read_text().splitlines() if ln and not ln.startswith("#")]
        merges = [tuple(ln.split(" ")) for ln in lines]
    else:
        merges = bpe_merges(words())
        letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
        tokens = ["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters)]
        tokens += [a + b for a, b in merges if a + b not in tokens]
        vocab = {t: i for i, t in enumerate(tokens)}
    tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_TOKENS)
    for w in words():
        ids = tok(w, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise RuntimeError(f"tokenizer splits {w!r} into {ids}")
    return tok, vocab, [f"{a} {b}" for a, b in merges]


def build_bert_tokenizer():
    from transformers import BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {t: i for i, t in enumerate(specials + words())}
    tok = BertTokenizer(vocab=vocab, model_max_length=MAX_TOKENS)
    return tok, vocab


def write_vocab_files(folder: Path, clip=None, bert=None) -> None:
    """transformers 5 saves only tokenizer.json; older loaders need the classic vocabulary files too."""
    if clip is not None:
        vocab, merges = clip
        (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    if bert is not None:
        (folder / "vocab.txt").write_text("\n".join(sorted(bert, key=bert.get)) + "\n")


# ------------------------------------------------------------------ VAE


def make_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=shapes.IMAGE_SIZE,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64), layers_per_block=1, norm_num_groups=16,
    )


def train_vae(args, out: Path) -> None:
    seed_all(args.seed)
    vae = make_vae()
    images, _ = shapes.dataset(shapes.all_specs(), args.vae_images, seed=args.seed + 1)
    x_all = to_tensor(images)
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed + 2)
    t0 = time.time()
    vae.train()
    for step in range(args.vae_steps):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, args.vae_steps, args.vae_lr, 100)
        idx = torch.randint(0, len(x_all), (args.vae_batch,), generator=gen)
        x = x_all[idx]
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        kl = post.kl().mean() / z[0].numel()
        loss = F.mse_loss(rec, x) + F.l1_loss(rec, x) * 0.5 + args.vae_kl * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if step % 200 == 0 or step == args.vae_steps - 1:
            log(f"vae step {step}/{args.vae_steps} loss {loss.item():.5f} kl {kl.item():.3f} "
                f"({time.time() - t0:.0f}s)")
    vae.eval()
    with torch.no_grad():
        lat = torch.cat([vae.encode(x_all[i:i + 256]).latent_dist.mean for i in range(0, min(4096, len(x_all)), 256)])
        std = lat.std().item()
        rec = vae.decode(lat[:256]).sample
        err = (rec - x_all[:256]).abs().mul(127.5).mean().item()
    vae.register_to_config(scaling_factor=float(1.0 / std))
    folder = out / "vae-stage"
    vae.save_pretrained(folder, safe_serialization=True)
    stats = {"latent_std": std, "scaling_factor": 1.0 / std, "recon_mae_uint8": err,
             "seconds": round(time.time() - t0, 1), "steps": args.vae_steps}
    (folder / "stats.json").write_text(json.dumps(stats, indent=2))
    log(f"vae done: {stats}")


def load_vae(out: Path):
    from diffusers import AutoencoderKL

    folder = out / "vae-stage"
    if not folder.exists():
        raise SystemExit(f"{folder} is missing: run --part vae first")
    vae = AutoencoderKL.from_pretrained(folder)
    vae.eval().requires_grad_(False)
    return vae


# ------------------------------------------------------------------ SD (text encoder + UNet)


def make_unet(width: int, layers: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=shapes.IMAGE_SIZE // 4, in_channels=4, out_channels=4, layers_per_block=layers,
        block_out_channels=(width, width * 2), norm_num_groups=16,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=64, attention_head_dim=4, transformer_layers_per_block=1,
    )


def make_text_encoder(tok):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=MAX_TOKENS, projection_dim=64,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    return CLIPTextModel(cfg)


def train_schedule():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                         prediction_type="v_prediction", steps_offset=1, clip_sample=False)


@torch.no_grad()
def encode_images(vae, images: np.ndarray) -> torch.Tensor:
    x = to_tensor(images)
    return torch.cat([vae.encode(x[i:i + 512]).latent_dist.mean for i in range(0, len(x), 512)])


class EMA:
    def __init__(self, modules, decay: float):
        self.decay = decay
        self.params = [p for m in modules for p in m.parameters()]
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow, self.params, strict=True):
            s.mul_(d).add_(p.detach(), alpha=1 - d)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        for s, p in zip(self.shadow, self.params, strict=True):
            p.copy_(s)


def train_sd(args, out: Path) -> None:
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    seed_all(args.seed + 10)
    vae = load_vae(out)
    tok, clip_vocab, clip_merges = build_clip_tokenizer()
    text_encoder = make_text_encoder(tok)
    unet = make_unet(args.unet_width, args.unet_layers)
    sched = train_schedule()
    t0 = time.time()
    specs = shapes.train_specs()
    images, chosen = shapes.dataset(specs, args.sd_images, seed=args.seed + 11)
    latents = encode_images(vae, images) * vae.config.scaling_factor
    del images
    prompts = sorted({s.prompt for s in specs})
    pidx = {p: i for i, p in enumerate(prompts)}
    # the pipeline's own encoding: pad to model_max_length, no attention mask
    ids = tok([*prompts, ""], padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids
    empty_id = len(prompts)
    prompt_of = torch.tensor([pidx[s.prompt] for s in chosen])
    log(f"sd data: {len(latents)} latents of {len(prompts)} prompts ({time.time() - t0:.0f}s), "
        f"unet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M params, "
        f"text {sum(p.numel() for p in text_encoder.parameters()) / 1e6:.2f}M")
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=args.sd_lr, weight_decay=1e-4)
    ema = EMA([unet, text_encoder], args.ema)
    gen = torch.Generator().manual_seed(args.seed + 12)
    alphas = sched.alphas_cumprod
    snr = alphas / (1 - alphas)
    unet.train()
    text_encoder.train()
    t0 = time.time()
    for step in range(args.sd_steps):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, args.sd_steps, args.sd_lr, 200)
        idx = torch.randint(0, len(latents), (args.batch,), generator=gen)
        z0 = latents[idx]
        p = prompt_of[idx].clone()
        drop = torch.rand(args.batch, generator=gen) < args.cfg_drop
        p[drop] = empty_id
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (args.batch,), generator=gen)
        zt = sched.add_noise(z0, noise, t)
        target = sched.get_velocity(z0, noise, t)
        cond = text_encoder(ids[p])[0]
        pred = unet(zt, t, encoder_hidden_states=cond).sample
        # min-SNR weighting (gamma 5) for v-prediction
        w = torch.clamp(snr[t], max=5.0) / (snr[t] + 1)
        loss = (w * ((pred - target) ** 2).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(step)
        if step % 250 == 0 or step == args.sd_steps - 1:
            log(f"sd step {step}/{args.sd_steps} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
    seconds = time.time() - t0
    ema.copy_to_model()
    unet.eval()
    text_encoder.eval()
    scheduler = DPMSolverMultistepScheduler.from_config(
        sched.config, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing=args.spacing,
        steps_offset=1, prediction_type="v_prediction", beta_schedule="squaredcos_cap_v2",
    )
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tok, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    folder = out / "sd"
    pipe.save_pretrained(folder, safe_serialization=True)
    write_vocab_files(folder / "tokenizer", clip=(clip_vocab, clip_merges))
    vae_stats = json.loads((out / "vae-stage" / "stats.json").read_text())
    (folder / "pixelmill.json").write_text(json.dumps({
        "kind": "text-to-image",
        "defaults": {"steps": 20, "guidance": 3.0, "width": shapes.IMAGE_SIZE, "height": shapes.IMAGE_SIZE,
                     "scheduler": "dpm++"},
        "vocabulary": {"colors": list(shapes.COLORS), "shapes": list(shapes.SHAPES),
                       "sizes": list(shapes.SIZES), "template": "a {size} {color} {shape} on a {background} background"},
        "held_out": [list(t) for t in shapes.held_out_triples()],
        "training": {"seed": args.seed, "threads": args.threads, "sd_steps": args.sd_steps, "batch": args.batch,
                     "sd_seconds": round(seconds, 1), "vae": vae_stats, "unet_width": args.unet_width, "unet_layers": args.unet_layers,
                     "images": args.sd_images},
    }, indent=2) + "\n")
    log(f"sd saved to {folder} ({seconds:.0f}s of training)")


# ------------------------------------------------------------------ BLIP


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """(grid*grid, dim): half the channels encode the row, half the column, at geometric frequencies."""
    quarter = dim // 4
    freqs = 1.0 / (100.0 ** (torch.arange(quarter, dtype=torch.float32) / max(1, quarter)))
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                            indexing="ij")
    parts = []
    for coord in (ys.flatten(), xs.flatten()):
        ang = coord[:, None] * freqs[None]
        parts += [torch.sin(ang), torch.cos(ang)]
    out = torch.cat(parts, dim=1)
    return torch.nn.functional.pad(out, (0, dim - out.shape[1]))


def train_blip(args, out: Path) -> None:
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    seed_all(args.seed + 20)
    tok, bert_vocab = build_bert_tokenizer()
    image_processor = BlipImageProcessor(size={"height": shapes.IMAGE_SIZE, "width": shapes.IMAGE_SIZE},
                                         do_convert_rgb=True)
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tok)
    h = args.blip_width
    cfg = BlipConfig(
        text_config=dict(vocab_size=len(bert_vocab), hidden_size=h, encoder_hidden_size=h, intermediate_size=2 * h,
                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=MAX_TOKENS + 8,
                         bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
                         sep_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id, projection_dim=h),
        vision_config=dict(hidden_size=h, intermediate_size=2 * h, num_hidden_layers=args.blip_vision_layers,
                           num_attention_heads=4, image_size=shapes.IMAGE_SIZE, patch_size=4, projection_dim=h,
                           initializer_range=0.02),
        projection_dim=h, image_text_hidden_size=h,
    )
    model = BlipForConditionalGeneration(cfg)
    if args.blip_sincos:
        # start the (learned) patch position embeddings from a 2D sine/cosine grid instead of ~zero,
        # so the vision tower knows from step 0 which patches are neighbours
        with torch.no_grad():
            emb = model.vision_model.embeddings.position_embedding
            grid = shapes.IMAGE_SIZE // 4
            emb[0, 1:].copy_(0.2 * sincos_2d(grid, emb.shape[-1]))
    t0 = time.time()
    # every caption, held-out combinations included
    images, chosen = shapes.dataset(shapes.all_specs(), args.blip_images, seed=args.seed + 21)
    if args.blip_vae_fraction > 0:
        vae = load_vae(out)
        n = int(len(images) * args.blip_vae_fraction)
        with torch.no_grad():
            x = to_tensor(images[:n])
            rec = torch.cat([vae.decode(vae.encode(x[i:i + 512]).latent_dist.mean).sample
                             for i in range(0, n, 512)])
        images[:n] = ((rec.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    mean = torch.tensor(image_processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(image_processor.image_std).view(1, 3, 1, 1)
    pixels = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
    check = processor(images=[images[0]], return_tensors="pt").pixel_values
    if not torch.allclose(check, pixels[:1], atol=1e-4):
        raise RuntimeError("manual preprocessing differs from BlipProcessor")
    enc = tok([s.prompt for s in chosen], padding="max_length", max_length=MAX_TOKENS, truncation=True,
              return_tensors="pt")
    input_ids, attn = enc.input_ids, enc.attention_mask
    labels = input_ids.masked_fill(input_ids == tok.pad_token_id, -100)
    log(f"blip data: {len(pixels)} images ({time.time() - t0:.0f}s), "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params")
    opt = torch.optim.AdamW(model.parameters(), lr=args.blip_lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(args.seed + 22)
    model.train()
    t0 = time.time()
    for step in range(args.blip_steps):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, args.blip_steps, args.blip_lr, 100)
        idx = torch.randint(0, len(pixels), (args.batch,), generator=gen)
        outp = model(pixel_values=pixels[idx], input_ids=input_ids[idx], attention_mask=attn[idx], labels=labels[idx])
        opt.zero_grad(set_to_none=True)
        outp.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 250 == 0 or step == args.blip_steps - 1:
            log(f"blip step {step}/{args.blip_steps} loss {outp.loss.item():.4f} ({time.time() - t0:.0f}s)")
    seconds = time.time() - t0
    model.eval()
    model.generation_config.max_new_tokens = MAX_TOKENS
    model.generation_config.bos_token_id = tok.cls_token_id
    model.generation_config.eos_token_id = tok.sep_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    folder = out / "blip"
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    write_vocab_files(folder, bert=bert_vocab)
    (folder / "pixelmill.json").write_text(json.dumps({
        "kind": "captioning",
        "defaults": {"max_tokens": MAX_TOKENS, "num_beams": 1},
        "training": {"seed": args.seed, "threads": args.threads, "blip_steps": args.blip_steps,
                     "batch": args.batch, "blip_seconds": round(seconds, 1), "images": args.blip_images,
                     "vae_fraction": args.blip_vae_fraction, "width": args.blip_width,
                     "lr": args.blip_lr, "sincos": args.blip_sincos, "vision_layers": args.blip_vision_layers},
    }, indent=2) + "\n")
    log(f"blip saved to {folder} ({seconds:.0f}s of training)")


# ------------------------------------------------------------------ main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "models" / "embedded")
    ap.add_argument("--part", choices=["all", "vae", "sd", "blip"], default="all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--vae-steps", type=int, default=2000)
    ap.add_argument("--vae-batch", type=int, default=32)
    ap.add_argument("--vae-images", type=int, default=8000)
    ap.add_argument("--vae-lr", type=float, default=2e-3)
    ap.add_argument("--vae-kl", type=float, default=1e-4)
    ap.add_argument("--sd-steps", type=int, default=3000)
    ap.add_argument("--sd-images", type=int, default=30000)
    ap.add_argument("--sd-lr", type=float, default=1e-3)
    ap.add_argument("--unet-width", type=int, default=32)
    ap.add_argument("--unet-layers", type=int, default=2)
    ap.add_argument("--cfg-drop", type=float, default=0.1)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--spacing", default="leading", choices=["leading", "trailing", "linspace"])
    ap.add_argument("--blip-steps", type=int, default=5000)
    ap.add_argument("--blip-images", type=int, default=20000)
    ap.add_argument("--blip-lr", type=float, default=1e-3)
    ap.add_argument("--blip-width", type=int, default=96)
    ap.add_argument("--blip-vae-fraction", type=float, default=0.5)
    ap.add_argument("--blip-vision-layers", type=int, default=3)
    ap.add_argument("--blip-sincos", type=int, default=1, help="1: sine/cosine start for position embeddings")
    ap.add_argument("--smoke", action="store_true", help="a few steps of each stage (tests)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.vae_steps, args.sd_steps, args.blip_steps = 3, 3, 3
        args.vae_images, args.sd_images, args.blip_images, args.batch, args.vae_batch = 64, 64, 64, 8, 8
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if args.part in ("all", "vae"):
        train_vae(args, args.out)
    if args.part in ("all", "sd"):
        train_sd(args, args.out)
    if args.part in ("all", "blip"):
        train_blip(args, args.out)
    log(f"done in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
