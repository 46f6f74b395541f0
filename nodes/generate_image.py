"""The ``generate_image`` node: text-to-image with diffusers (embedded tiny model or any SD-family model)."""

from __future__ import annotations

import json
import random
import threading
from typing import Literal

from pydantic import Field, field_validator

from pixelmill.models.loaders import load_text2image, resolve_model
from pixelmill.models.locate import recommended
from pixelmill.models.manager import manager_for
from pixelmill.models.options import ModelOptions
from pixelmill.moderation.images import nsfw_verdict
from pixelmill.node import ArtifactRef, Blocked, Model, Node

SCHEDULERS = {
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpm++_karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}


class GenerateImageConfig(ModelOptions):
    """``model``: 'embedded', a diffusers model id (from the local cache) or a folder."""

    scheduler: Literal["default", "dpm++", "dpm++_karras", "euler", "euler_a", "ddim", "unipc", "lcm"] = Field(
        "default", description="sampler; 'default' keeps the one the model ships with")
    on_nsfw: Literal["fail", "mark", "continue"] = Field(
        "fail", description="when the model's safety checker flags an image: fail (the run ends blocked), mark "
                            "(succeed, output nsfw flags, record nsfw in the PNG, log a warning) or continue "
                            "(succeed, output nsfw flags)")


class GenerateImageInputs(Model):
    prompt: str = Field(description="what to draw")
    negative_prompt: str | None = Field(None, description="what to avoid")
    steps: int | None = Field(None, ge=1, le=500, description="denoising steps (model's recommended default)")
    guidance: float | None = Field(None, ge=0, le=50, description="classifier-free guidance scale (model default)")
    width: int | None = Field(None, ge=8, le=4096, description="pixels, a multiple of 8 (model default)")
    height: int | None = Field(None, ge=8, le=4096, description="pixels, a multiple of 8 (model default)")
    seed: int | None = Field(None, ge=0, lt=2**63, description="same seed, same image; drawn and recorded when absent")
    num_images: int = Field(1, ge=1, le=16, description="images from this prompt (one seed, one batch)")

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, value):
        if value is not None and value % 8:
            raise ValueError(f"must be a multiple of 8 (got {value})")
        return value


class GenerateImageOutputs(Model):
    image: ArtifactRef
    images: list[ArtifactRef]
    seed: int
    model: str
    steps: int
    guidance: float
    width: int
    height: int
    scheduler: str
    device: str
    nsfw: list[bool] = Field(default_factory=list, description="the safety checker's verdict per image "
                                                               "(all false when the model has none)")
    safety_checker: bool = Field(False, description="whether a safety checker ran")


def make_scheduler(pipe, name: str):
    """A scheduler of the named kind built from the model's own scheduler config."""
    import diffusers

    cls_name, extra = SCHEDULERS[name]
    return getattr(diffusers, cls_name).from_config(pipe.scheduler.config, **extra)


_LOCKS_GUARD = threading.Lock()


def _lock_for(pipe) -> threading.Lock:
    """One lock per shared pipeline: its scheduler keeps per-call state, so calls on it take turns."""
    lock = getattr(pipe, "_pixelmill_lock", None)
    if lock is None:
        with _LOCKS_GUARD:
            lock = getattr(pipe, "_pixelmill_lock", None)
            if lock is None:
                lock = threading.Lock()
                object.__setattr__(pipe, "_pixelmill_lock", lock)
    return lock


def generate(pipe, *, prompt, negative_prompt, steps, guidance, width, height, seed, num_images, scheduler="default",
             on_step=None, verdict: list | None = None):
    """Call the shared pipeline exactly as a plain diffusers call would (same arguments, same generator).

    ``verdict``, when given, receives the safety checker's flag per image (None where no checker ran)."""
    import torch

    kwargs = {}
    if on_step is not None:
        def callback(p, i, t, tensors):
            on_step(i + 1, steps)
            return tensors
        kwargs["callback_on_step_end"] = callback
    # a CPU generator gives the same starting noise on every device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    with _lock_for(pipe):
        original = pipe.scheduler
        if scheduler != "default":
            pipe.scheduler = make_scheduler(pipe, scheduler)
        try:
            with torch.inference_mode():
                out = pipe(prompt=prompt, negative_prompt=negative_prompt, num_inference_steps=steps,
                           guidance_scale=guidance, width=width, height=height, generator=generator,
                           num_images_per_prompt=num_images, output_type="pil", **kwargs)
        finally:
            if pipe.scheduler is not original:
                pipe.scheduler = original
    if verdict is not None:
        flags = nsfw_verdict(out)
        verdict.extend(flags if flags is not None else [None] * len(out.images))
    return out.images


class GenerateImageNode(Node):
    """Generate images from a prompt with a diffusers text-to-image pipeline. ``model: embedded`` is the
    tiny offline model shipped with pixelmill (32x32 flat shapes: "a small red circle on a blue
    background"); any Stable Diffusion family id or folder works the same way (offline unless
    PIXELMILL_ALLOW_DOWNLOADS=1). Writes PNGs whose ``parameters`` text chunk records prompt, steps,
    guidance, seed, size and model; the seed is drawn and recorded when not given."""

    type = "generate_image"
    version = "1"
    Config = GenerateImageConfig
    Inputs = GenerateImageInputs
    Outputs = GenerateImageOutputs
    uses_gpu = True
    # Without a seed each run draws a new one and must give a new image; with a seed the output is
    # reproducible (see the tests), so such calls are cached by (config, inputs) like ComfyUI does.
    deterministic = False

    def cacheable(self, inputs: GenerateImageInputs) -> bool:
        return inputs.seed is not None

    def run(self, inputs: GenerateImageInputs, ctx) -> GenerateImageOutputs:
        cfg = self.config
        r = resolve_model(cfg.model, "sd", cfg.device, cfg.dtype)
        defaults = recommended(r.name, r.source)
        seed = inputs.seed if inputs.seed is not None else random.SystemRandom().randrange(2**31)
        steps = inputs.steps or int(defaults["steps"])
        guidance = float(inputs.guidance if inputs.guidance is not None else defaults["guidance"])
        manager = manager_for(ctx)
        ctx.progress(0, steps, f"loading {r.name}")
        with manager.use(("text2image", *r.key), lambda: load_text2image(r)) as pipe:
            width = inputs.width or defaults.get("width") or _native_size(pipe)
            height = inputs.height or defaults.get("height") or _native_size(pipe)
            ctx.progress(0, steps, "denoising")
            verdict: list = []
            images = generate(
                pipe, prompt=inputs.prompt, negative_prompt=inputs.negative_prompt, steps=steps, guidance=guidance,
                width=width, height=height, seed=seed, num_images=inputs.num_images, scheduler=cfg.scheduler,
                on_step=lambda i, n: ctx.progress(i, n, "denoising"), verdict=verdict,
            )
        nsfw = [bool(f) for f in verdict]
        checked = any(f is not None for f in verdict)
        if any(nsfw):
            flagged = ", ".join(str(i) for i, f in enumerate(nsfw) if f)
            if cfg.on_nsfw == "fail":
                raise Blocked(f"the model's safety checker flagged image(s) {flagged} of {len(nsfw)} as not safe "
                              f"for work (on_nsfw: fail)", rule="safety_checker", category="sexual")
            if cfg.on_nsfw == "mark":
                ctx.logger.warning("safety checker flagged image(s) %s; marked nsfw (on_nsfw: mark)", flagged)
        scheduler_name = cfg.scheduler if cfg.scheduler != "default" else type(pipe.scheduler).__name__
        params = {
            "prompt": inputs.prompt, "negative_prompt": inputs.negative_prompt or "", "steps": steps,
            "guidance": guidance, "seed": seed, "width": width, "height": height, "model": r.name,
            "scheduler": scheduler_name, "num_images": inputs.num_images, "device": r.device,
            "dtype": str(r.dtype).replace("torch.", ""),
        }
        refs = []
        for i, image in enumerate(images):
            ref, path = ctx.new_artifact("image.png", "image/png")
            save_png(image, path, {**params, "index": i, **({"nsfw": True} if nsfw[i] and cfg.on_nsfw == "mark"
                                                               else {})})
            refs.append(ref)
        ctx.logger.info("generated %d image(s) with %s, seed %d", len(refs), r.name, seed)
        return GenerateImageOutputs(image=refs[0], images=refs, seed=seed, model=r.name, steps=steps,
                                    guidance=guidance, width=width, height=height, scheduler=scheduler_name,
                                    device=r.device, nsfw=nsfw, safety_checker=checked)


def _native_size(pipe) -> int:
    unet = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    sample = getattr(getattr(unet, "config", None), "sample_size", None) or 64
    return int(sample) * int(getattr(pipe, "vae_scale_factor", 8))


def parameters_text(params: dict) -> str:
    """The AUTOMATIC1111-style ``parameters`` text many tools read."""
    lines = [params["prompt"]]
    if params.get("negative_prompt"):
        lines.append(f"Negative prompt: {params['negative_prompt']}")
    lines.append(
        f"Steps: {params['steps']}, Sampler: {params['scheduler']}, CFG scale: {params['guidance']:g}, "
        f"Seed: {params['seed']}, Size: {params['width']}x{params['height']}, Model: {params['model']}"
        + (f", Batch index: {params['index']}" if params.get("num_images", 1) > 1 else "")
    )
    return "\n".join(lines)


def save_png(image, path, params: dict) -> None:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", parameters_text(params))
    info.add_text("pixelmill", json.dumps(params, sort_keys=True))
    image.save(path, format="PNG", pnginfo=info)
