"""Text-to-image families: what each diffusers pipeline wants (negative prompt, precision, sizes, settings).

A family is recognised from the pipeline class a folder's ``model_index.json`` names (``_class_name``), so
most decisions are made before any weights load. Everything here reads configs and call signatures; no
family-specific tensors are touched.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Family:
    name: str
    # 'pass': the pipeline takes a negative prompt (None is fine); 'empty': it takes one but breaks on None,
    # so "" is passed; 'refuse': the pipeline has no use for one (guidance-distilled) and a given one fails
    negative: str = "pass"
    cuda_dtype: str = "float16"
    size_align: int = 8  # the pipeline's own divisibility check on width/height (at least)
    latent_patch: int = 1  # latent pixels per transformer token side (packing / patchify)
    clip_limited: bool = True  # a CLIP text encoder reads the prompt (77 tokens)


FAMILIES: dict[str, Family] = {
    "StableDiffusionPipeline": Family("sd"),
    "StableDiffusionXLPipeline": Family("sdxl"),
    "StableDiffusion3Pipeline": Family("sd3", cuda_dtype="bfloat16", size_align=16),
    "FluxPipeline": Family("flux", negative="refuse", cuda_dtype="bfloat16", size_align=1, latent_patch=2),
    "PixArtAlphaPipeline": Family("pixart-alpha", negative="empty", clip_limited=False),
    "PixArtSigmaPipeline": Family("pixart-sigma", negative="empty", clip_limited=False),
    "SanaPipeline": Family("sana", negative="empty", cuda_dtype="bfloat16", size_align=32, clip_limited=False),
}
GENERIC = Family("other")
NEGATIVE_REFUSED = {
    "flux": "Flux is guidance-distilled and ignores a negative prompt in a plain call (it has no classifier-free "
            "guidance); remove negative_prompt, or describe what you want in the prompt instead",
}


def read_json(source: str, name: str) -> dict | None:
    """A JSON file of a model folder, or of a hub id's snapshot in the local cache (never downloads)."""
    path = Path(source) / name
    if not path.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(source, name)
        except Exception:  # noqa: BLE001 - not a repo id, no cache: nothing known
            return None
        if not isinstance(cached, str):
            return None
        path = Path(cached)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def pipeline_class_name(source: str) -> str | None:
    index = read_json(source, "model_index.json")
    return index.get("_class_name") if index else None


def family_of(class_name: str | None) -> Family:
    return FAMILIES.get(class_name or "", GENERIC)


def default_dtype_name(family: Family, device: str) -> str:
    """Per-family precision: bfloat16 for Flux/SD3/Sana and float16 for SD/SDXL/PixArt on CUDA, float16 on
    MPS, float32 on the CPU."""
    if device.startswith("cuda"):
        return family.cuda_dtype
    return "float16" if device == "mps" else "float32"


# ------------------------------------------------------------------ negative prompt


def negative_kwargs(family: Family, pipe, negative_prompt: str | None) -> dict:
    """The negative-prompt argument for this pipeline, or ValueError with the reason it cannot take one."""
    accepts = "negative_prompt" in call_parameters(pipe)
    if family.negative == "refuse" or not accepts:
        if negative_prompt:
            reason = NEGATIVE_REFUSED.get(family.name) or (
                f"{type(pipe).__name__} takes no negative prompt; remove negative_prompt")
            raise ValueError(f"negative_prompt is not used by this model: {reason}")
        return {}
    if negative_prompt is None and family.negative == "empty":
        return {"negative_prompt": ""}
    return {"negative_prompt": negative_prompt}


def call_parameters(pipe) -> dict[str, inspect.Parameter]:
    return dict(_call_parameters(type(pipe)))


@functools.lru_cache(maxsize=64)
def _call_parameters(cls) -> dict[str, inspect.Parameter]:
    # read once per pipeline class: the node asks four times per image
    return dict(inspect.signature(cls.__call__).parameters)


# ------------------------------------------------------------------ recommended settings


def pipeline_defaults(pipe) -> dict:
    params = call_parameters(pipe)
    out = {}
    for ours, theirs in (("steps", "num_inference_steps"), ("guidance", "guidance_scale")):
        default = params.get(theirs).default if theirs in params else inspect.Parameter.empty
        if default is not inspect.Parameter.empty and default is not None:
            out[ours] = default
    return out


def inferred_defaults(family: Family, scheduler_config: dict | None, denoiser_config: dict | None) -> tuple[dict, str]:
    """Settings implied by the scheduler and family: (defaults, why). Empty when nothing is implied."""
    sched = scheduler_config or {}
    cls = sched.get("_class_name", "")
    if cls == "LCMScheduler":
        return {"steps": 4, "guidance": 1.0}, "LCM scheduler"
    if cls in ("EulerAncestralDiscreteScheduler", "EulerDiscreteScheduler") and \
            sched.get("timestep_spacing") == "trailing" and family.name in ("sd", "sdxl"):
        return {"steps": 1, "guidance": 0.0}, "turbo-style scheduler (Euler, trailing timesteps)"
    if family.name == "flux":
        if denoiser_config is not None and not denoiser_config.get("guidance_embeds", True):
            return {"steps": 4, "guidance": 0.0}, "Flux without guidance embedding (schnell-style)"
        return {"steps": 28, "guidance": 3.5}, "Flux with guidance embedding (dev-style)"
    return {}, ""


def denoiser(pipe):
    """The UNet or transformer of a pipeline. Never ``a or b``: a compiled module's truth value asks its
    wrapped model for len(), which diffusers models do not have."""
    unet = getattr(pipe, "unet", None)
    return unet if unet is not None else getattr(pipe, "transformer", None)


def denoiser_name(class_name: str | None) -> str:
    return "unet" if class_name in ("StableDiffusionPipeline", "StableDiffusionXLPipeline") else "transformer"


def recommended_settings(source: str, family: Family, pipe, folder_defaults: dict | None,
                         known: dict | None) -> tuple[dict, str]:
    """(steps/guidance/width/height defaults, where they came from): pixelmill.json, else a known id, else
    inferred from scheduler and family, else the pipeline's call defaults."""
    base = {"steps": 30, "guidance": 7.5, **pipeline_defaults(pipe)}
    if folder_defaults:
        return {**base, **folder_defaults}, "pixelmill.json"
    if known:
        return {**base, **known}, "known model"
    sched = dict(getattr(pipe.scheduler, "config", {}) or {})
    sched.setdefault("_class_name", type(pipe.scheduler).__name__)
    den = denoiser(pipe)
    inferred, why = inferred_defaults(family, sched, dict(den.config) if den is not None else None)
    if inferred:
        return {**base, **inferred}, why
    return base, "pipeline defaults"


# ------------------------------------------------------------------ sizes


def size_multiple(family: Family, pipe) -> int:
    vsf = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    den = getattr(pipe, "transformer", None)
    patch = int(getattr(getattr(den, "config", None), "patch_size", 1) or 1) if den is not None else 1
    step = vsf * max(patch, family.latent_patch)
    return step * family.size_align // math.gcd(step, family.size_align)


def native_size(pipe) -> int:
    """The pipeline's own default: its default sample size (latent pixels) times the VAE scale factor."""
    sample = getattr(pipe, "default_sample_size", None)
    if not sample:
        den = denoiser(pipe)
        sample = getattr(getattr(den, "config", None), "sample_size", None) or 64
    if isinstance(sample, (tuple, list)):
        sample = sample[0]
    return int(sample) * int(getattr(pipe, "vae_scale_factor", 8) or 8)


def round_size(value: int, multiple: int) -> int:
    return max(multiple, int(value / multiple + 0.5) * multiple)


def call_extras(family: Family, pipe) -> dict:
    """Arguments some pipelines need: resolution binning only where the model's sample size has bins."""
    params = call_parameters(pipe)
    if "use_resolution_binning" not in params:
        return {}
    den = getattr(pipe, "transformer", None)
    sample = getattr(getattr(den, "config", None), "sample_size", None)
    binned = {"pixart-alpha": (32, 64, 128), "pixart-sigma": (32, 64, 128, 256), "sana": (16, 32, 64, 128)}
    return {"use_resolution_binning": sample in binned.get(family.name, ())}


# ------------------------------------------------------------------ prompts


def prompt_warnings(family: Family, pipe, prompt: str) -> list[str]:
    """Warnings for a prompt longer than what the text encoder(s) read."""
    tok = getattr(pipe, "tokenizer", None)
    if tok is None:
        return []
    try:
        n = len(tok(prompt, truncation=False).input_ids)
    except Exception:  # noqa: BLE001 - a tokenizer that cannot count gives no warning
        return []
    params = call_parameters(pipe)
    if family.clip_limited:
        limit = int(getattr(tok, "model_max_length", 77) or 77)
        if n <= limit:
            return []
        more = ""
        if family.name == "flux" or ("max_sequence_length" in params and getattr(pipe, "tokenizer_3", None) is not None):
            more = " (the T5 text encoder reads further)"
        return [f"the prompt is {n} tokens; the CLIP text encoder reads only the first {limit}{more}, the "
                "rest is cut"]
    limit = params["max_sequence_length"].default if "max_sequence_length" in params else None
    if isinstance(limit, int) and n > limit:
        return [f"the prompt is {n} tokens; this model reads only the first {limit}, the rest is cut"]
    return []


# ------------------------------------------------------------------ schedulers


def check_scheduler(scheduler_cls, current_cls_name: str, compatibles: list, model: str, choice: str) -> None:
    """ValueError when the named sampler does not fit the model's own scheduler (diffusers' ``compatibles``)."""
    names = {c if isinstance(c, str) else c.__name__ for c in compatibles} | {current_cls_name}
    if scheduler_cls.__name__ not in names:
        fits = sorted(n for n in names)
        raise ValueError(
            f"scheduler '{choice}' ({scheduler_cls.__name__}) does not fit model '{model}', whose scheduler is "
            f"{current_cls_name}; schedulers that fit: {', '.join(fits)} (or scheduler: default)")


def scheduler_compatibles(source: str) -> tuple[str, list] | None:
    """(class name, compatible class names) of a model's own scheduler from its config, before loading."""
    cfg = read_json(source, "scheduler/scheduler_config.json")
    name = (cfg or {}).get("_class_name")
    if not name:
        return None
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is None:
        return None
    return name, [c.__name__ if not isinstance(c, str) else c for c in getattr(cls, "_compatibles", [])]


def check_steps(family: Family, pipe, steps: int) -> None:
    """PixArt-alpha's pipeline treats a 1-step call as a one-step (DMD) model and reads a second scheduler
    output that multistep samplers do not give: refuse that with a reason instead of an IndexError."""
    if family.name == "pixart-alpha" and steps == 1 and type(pipe.scheduler).__name__ != "LCMScheduler":
        raise ValueError(f"PixArt-alpha runs 1 step only with a one-step model and scheduler (LCMScheduler); this "
                         f"one has {type(pipe.scheduler).__name__}: use 2 or more steps")
