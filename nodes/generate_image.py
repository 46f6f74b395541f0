"""The ``generate_image`` node: text-to-image with diffusers (embedded tiny model or any SD-family model)."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field

from pixelmill.models import families
from pixelmill.models.diffusion import prepare
from pixelmill.models.loaders import load_text2image
from pixelmill.models.locate import folder_defaults, known_defaults
from pixelmill.models.manager import pipeline_lock
from pixelmill.models.memory import estimate_folder_bytes
from pixelmill.models.options import PipelineOptions
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


class GenerateImageConfig(PipelineOptions):
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
    width: int | None = Field(None, ge=8, le=4096, description="pixels (model default); rounded to the model's "
                                                             "size multiple, the real size is in the outputs")
    height: int | None = Field(None, ge=8, le=4096, description="pixels (model default); rounded like width")
    seed: int | None = Field(None, ge=0, lt=2**63, description="same seed, same image; drawn and recorded when absent")
    num_images: int = Field(1, ge=1, le=16, description="images from this prompt (one seed, one batch)")


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
    settings_from: str = Field("", description="where steps/guidance/size defaults came from")
    warnings: list[str] = Field(default_factory=list, description="what was changed or cut, also in step events")


def make_scheduler(pipe, name: str, model: str = "this model"):
    """A scheduler of the named kind built from the model's own scheduler config (ValueError if it does not fit)."""
    import diffusers

    cls_name, extra = SCHEDULERS[name]
    cls = getattr(diffusers, cls_name)
    families.check_scheduler(cls, type(pipe.scheduler).__name__, getattr(pipe.scheduler, "compatibles", []), model,
                             name)
    return cls.from_config(pipe.scheduler.config, **extra)


def generate(pipe, *, prompt, negative_prompt, steps, guidance, width, height, seed, num_images, scheduler="default",
             on_step=None, family=None, model="this model", verdict: list | None = None):
    """Call the shared pipeline exactly as a plain diffusers call would (same arguments, same generator).

    ``verdict``, when given, receives the safety checker's flag per image (None where no checker ran)."""
    import torch

    family = family or families.family_of(type(pipe).__name__)
    kwargs = {**families.negative_kwargs(family, pipe, negative_prompt), **families.call_extras(family, pipe)}
    if on_step is not None:
        def callback(p, i, t, tensors):
            # the scheduler's own step count (PNDM runs one more than asked); never past the total
            timesteps = getattr(p.scheduler, "timesteps", None)
            total = max(steps, len(timesteps) if timesteps is not None else 0)
            on_step(min(i + 1, total), total)
            return tensors
        kwargs["callback_on_step_end"] = callback
    # a CPU generator gives the same starting noise on every device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    with pipeline_lock(pipe):
        original = pipe.scheduler
        if scheduler != "default":
            pipe.scheduler = make_scheduler(pipe, scheduler, model)
        try:
            with torch.inference_mode():
                out = pipe(prompt=prompt, num_inference_steps=steps,
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
    background"); SD 1.x/2.x, SDXL, SD3, Flux, PixArt-alpha/sigma and Sana ids or folders load through
    their own pipeline class (offline unless PIXELMILL_ALLOW_DOWNLOADS=1), with per-family negative
    prompts, precision, default settings and size multiples (docs/models.md). Writes PNGs whose ``parameters`` text chunk records prompt, steps,
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
        r, seed, manager = prepare(cfg, inputs.seed, ctx)
        family = families.family_of(r.pipeline_class)
        if inputs.negative_prompt and family.negative == "refuse":  # before any load
            raise ValueError(f"negative_prompt is not used by this model: {families.NEGATIVE_REFUSED[family.name]}")
        if cfg.scheduler != "default":
            _check_scheduler_before_load(r, cfg.scheduler)
        warnings: list[str] = []
        key = ("text2image", *r.key, *cfg.load_options())
        if not manager.is_loaded(key):
            ctx.progress(0, inputs.steps, f"loading {r.name}")
        element = 2 if str(r.dtype).endswith(("float16", "bfloat16")) else 4
        def estimate():  # read from the safetensors headers only when the model must load
            return estimate_folder_bytes(r.source, element, cfg.variant)

        with manager.use(key, lambda: load_text2image(r, cfg), estimate, warnings.append) as pipe:
            defaults, settings_from = families.recommended_settings(
                r.source, family, pipe, folder_defaults(r.source), known_defaults(r.name))
            steps = inputs.steps or int(defaults["steps"])
            guidance = float(inputs.guidance if inputs.guidance is not None else defaults["guidance"])
            families.check_steps(family, pipe, steps)
            native = families.native_size(pipe)
            multiple = families.size_multiple(family, pipe)
            asked_w = inputs.width or defaults.get("width") or native
            asked_h = inputs.height or defaults.get("height") or native
            width, height = families.round_size(asked_w, multiple), families.round_size(asked_h, multiple)
            if (width, height) != (asked_w, asked_h):
                warnings.append(f"size {asked_w}x{asked_h} is not a multiple of {multiple} for this model; "
                                f"generating {width}x{height}")
            warnings += families.prompt_warnings(family, pipe, inputs.prompt)
            for w in warnings:
                ctx.logger.warning("%s", w)
            ctx.progress(0, steps, "denoising" + "".join(f"; warning: {w}" for w in warnings))
            verdict: list = []
            images = generate(
                pipe, prompt=inputs.prompt, negative_prompt=inputs.negative_prompt, steps=steps, guidance=guidance,
                width=width, height=height, seed=seed, num_images=inputs.num_images, scheduler=cfg.scheduler,
                on_step=lambda i, n: ctx.progress(i, n, "denoising"), family=family, model=r.name,
                verdict=verdict,
            )
            scheduler_name = cfg.scheduler if cfg.scheduler != "default" else type(pipe.scheduler).__name__
        width, height = images[0].size  # what the pipeline really made
        nsfw = [bool(f) for f in verdict]
        checked = any(f is not None for f in verdict)
        if any(nsfw):
            flagged = ", ".join(str(i) for i, f in enumerate(nsfw) if f)
            if cfg.on_nsfw == "fail":
                raise Blocked(f"the model's safety checker flagged image(s) {flagged} of {len(nsfw)} as not safe "
                              f"for work (on_nsfw: fail)", rule="safety_checker", category="sexual")
            if cfg.on_nsfw == "mark":
                ctx.logger.warning("safety checker flagged image(s) %s; marked nsfw (on_nsfw: mark)", flagged)
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
                                    device=r.device, settings_from=settings_from, warnings=warnings, nsfw=nsfw,
                                    safety_checker=checked)


def _check_scheduler_before_load(r, choice: str) -> None:
    """A sampler that does not fit the model fails before its weights load (when its config is on disk)."""
    own = families.scheduler_compatibles(r.source)
    if own is None:
        return
    import diffusers

    families.check_scheduler(getattr(diffusers, SCHEDULERS[choice][0]), own[0], own[1], r.name, choice)


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
