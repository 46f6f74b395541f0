"""Morph between two prompts and seeds through a Stable Diffusion pipeline: the initial noise is slerped
between the two seeds' noise and the text embeddings are lerped, so neighbouring frames differ a little.

At t = 0 and t = 1 the call is the one a plain text-to-image call with that prompt and seed makes (same
noise from a CPU generator, same embeddings), so the end frames equal those images.
"""

from __future__ import annotations

from collections.abc import Callable

from pixelmill.models.manager import pipeline_lock


def slerp(a, b, t: float, eps: float = 1e-7):
    """Spherical interpolation of two noise tensors (keeps the Gaussian's norm, unlike a straight lerp)."""
    import torch

    fa, fb = a.flatten().double(), b.flatten().double()
    cos = torch.clamp(torch.dot(fa, fb) / (fa.norm() * fb.norm() + eps), -1.0, 1.0)
    theta = torch.acos(cos)
    if theta.abs() < 1e-4:
        return (a * (1 - t) + b * t).to(a.dtype)
    s = torch.sin(theta)
    out = (torch.sin((1 - t) * theta) / s) * a.double() + (torch.sin(t * theta) / s) * b.double()
    return out.to(a.dtype)


def morph_frames(pipe, *, prompt_a: str, prompt_b: str, seed_a: int, seed_b: int, frames: int, steps: int,
                 guidance: float, width: int, height: int, negative_prompt: str | None = None,
                 on_frame: Callable[[int, int], None] | None = None) -> list:
    """``frames`` PIL images from (prompt_a, seed_a) to (prompt_b, seed_b), both ends included."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    if frames < 2:
        raise ValueError("a morph needs at least 2 frames")
    unet = getattr(pipe, "unet", None)
    if unet is None or not hasattr(pipe, "encode_prompt"):
        raise ValueError(f"morph needs a Stable Diffusion (UNet) pipeline; {type(pipe).__name__} is not one")
    device = pipe._execution_device
    cfg = guidance > 1.0 and getattr(unet.config, "time_cond_proj_dim", None) is None
    scale = pipe.vae_scale_factor
    shape = (1, unet.config.in_channels, height // scale, width // scale)
    out_images = []
    with pipeline_lock(pipe), torch.inference_mode():
        embeds = []
        for prompt in (prompt_a, prompt_b):
            pos, neg = pipe.encode_prompt(prompt, device, 1, cfg, negative_prompt)
            embeds.append((pos, neg))
        dtype = embeds[0][0].dtype
        noise = [randn_tensor(shape, generator=torch.Generator(device="cpu").manual_seed(s), device=device,
                              dtype=dtype) for s in (seed_a, seed_b)]
        for i in range(frames):
            t = i / (frames - 1)
            pos = torch.lerp(embeds[0][0], embeds[1][0], t)
            neg = torch.lerp(embeds[0][1], embeds[1][1], t) if cfg else None
            latents = noise[0] if t == 0 else noise[1] if t == 1 else slerp(noise[0], noise[1], t)
            gen = torch.Generator(device="cpu").manual_seed(seed_a if t < 0.5 else seed_b)
            result = pipe(prompt_embeds=pos, negative_prompt_embeds=neg, latents=latents.clone(),
                          num_inference_steps=steps, guidance_scale=guidance, width=width, height=height,
                          generator=gen, output_type="pil")
            out_images.append(result.images[0])
            if on_frame is not None:
                on_frame(i + 1, frames)
    return out_images
