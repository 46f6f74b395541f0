"""GPU serving options of a loaded diffusers pipeline: CPU offload, VAE slicing/tiling, torch.compile."""

from __future__ import annotations

import logging

from .locate import ModelNotAvailable

log = logging.getLogger("pixelmill.models")


def _denoiser(pipe):
    from .families import denoiser

    return denoiser(pipe)


def apply_serving_options(pipe, device: str, options):
    """Move ``pipe`` to ``device`` (or set up CPU offload) and apply the options; returns the pipeline."""
    if options.cpu_offload != "none":
        if not device.startswith("cuda"):
            raise ModelNotAvailable(f"cpu_offload: {options.cpu_offload} needs a CUDA device (device is {device})")
        try:
            import accelerate  # noqa: F401
        except ImportError as exc:
            raise ModelNotAvailable(
                "cpu_offload needs the accelerate package: pip install 'pixelmill[gpu]'") from exc
        gpu_id = int(device.split(":")[1]) if ":" in device else None
        if options.cpu_offload == "model":
            pipe.enable_model_cpu_offload(gpu_id=gpu_id)
        else:
            pipe.enable_sequential_cpu_offload(gpu_id=gpu_id)
    else:
        pipe = pipe.to(device)
    vae = getattr(pipe, "vae", None)
    if options.vae_slicing and vae is not None and hasattr(vae, "enable_slicing"):
        vae.enable_slicing()
    if options.vae_tiling and vae is not None and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()
    if options.compile:
        compile_pipeline(pipe)
    return pipe


def compile_pipeline(pipe) -> None:
    """torch.compile the denoiser (and channels_last for convolutional UNets and the VAE). The first calls
    at each new size are slow while it compiles; worth it for long-lived workers only."""
    import torch

    den = _denoiser(pipe)
    if den is None:
        return
    if getattr(pipe, "unet", None) is not None:
        den.to(memory_format=torch.channels_last)
        if getattr(pipe, "vae", None) is not None:
            pipe.vae.to(memory_format=torch.channels_last)
    compiled = torch.compile(den)
    if getattr(pipe, "unet", None) is not None:
        pipe.unet = compiled
    else:
        pipe.transformer = compiled
    log.info("compiled the %s of %s", "unet" if getattr(pipe, "unet", None) is not None else "transformer",
             type(pipe).__name__)
