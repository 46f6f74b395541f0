"""Captioning models by architecture: BLIP, BLIP-2, GIT and LLaVA-style vision-language models.

The architecture comes from the folder's ``config.json`` (``model_type``), and the matching transformers
class loads it. A checkpoint whose weights do not cover that class (transformers would fill the gaps with
random values and caption garbage) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .families import read_json
from .locate import ModelNotAvailable

DEFAULT_INSTRUCTION = "Write a short caption for this image."


@dataclass(frozen=True)
class Arch:
    label: str
    model_class: str
    processor_class: str
    decoder_only: bool  # output repeats the prompt tokens, which are cut off
    chat: bool = False  # takes an instruction in a chat turn


ARCHS: dict[str, Arch] = {
    "blip": Arch("BLIP", "BlipForConditionalGeneration", "BlipProcessor", False),
    "blip-2": Arch("BLIP-2", "Blip2ForConditionalGeneration", "Blip2Processor", True),
    "git": Arch("GIT", "GitForCausalLM", "GitProcessor", False),
    "llava": Arch("LLaVA", "LlavaForConditionalGeneration", "LlavaProcessor", True, chat=True),
}
SUPPORTED = "BLIP (blip), BLIP-2 (blip-2), GIT (git) and LLaVA-style vision-language models (llava)"


@dataclass
class Captioner:
    model: Any
    processor: Any
    device: str
    dtype: Any
    arch: Arch


def architecture(name: str, source: str) -> Arch:
    """The captioning architecture of a model folder / cached id, or ModelNotAvailable saying what is supported."""
    cfg = read_json(source, "config.json")
    if cfg is None:
        return ARCHS["blip"]  # not on disk yet (a hub id with downloads on): BLIP, the historical default
    kind = str(cfg.get("model_type", ""))
    if kind in ARCHS:
        return ARCHS[kind]
    archs = ", ".join(cfg.get("architectures") or []) or "none named"
    raise ModelNotAvailable(
        f"captioning model '{name}' is a '{kind or 'unknown'}' model ({archs}), which the caption node does not "
        f"support; supported architectures: {SUPPORTED}")


def load(r, name: str, offline: dict) -> Captioner:
    import transformers

    arch = architecture(name, r.source)
    processor = getattr(transformers, arch.processor_class).from_pretrained(r.source, **offline)
    model, info = getattr(transformers, arch.model_class).from_pretrained(
        r.source, dtype=r.dtype, output_loading_info=True, **offline)
    missing = list(info.get("missing_keys") or [])
    if missing:
        total = len(model.state_dict())
        raise ModelNotAvailable(
            f"captioning model '{name}' does not hold {len(missing)} of the {total} weights a {arch.label} model "
            f"({arch.model_class}) needs (e.g. {', '.join(sorted(missing)[:3])}); pixelmill refuses to fill them "
            "at random: point `model:` at a complete checkpoint")
    model = model.to(r.device).eval()
    return Captioner(model, processor, r.device, r.dtype, arch)


def _prompts(c: Captioner, n: int, prefix: str | None, instruction: str | None) -> list[str] | None:
    if not c.arch.chat:
        return [prefix] * n if prefix else None
    text = instruction or DEFAULT_INSTRUCTION
    proc = c.processor
    if getattr(proc, "chat_template", None):
        conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        prompt = proc.apply_chat_template(conv, add_generation_prompt=True)
    else:
        image_token = getattr(proc, "image_token", None) or "<image>"
        prompt = f"USER: {image_token}\n{text} ASSISTANT:"
    return [prompt + (" " + prefix if prefix else "")] * n


def caption(c: Captioner, images, *, prefix=None, instruction=None, max_tokens=30, num_beams=1,
            should_stop=None) -> list[str]:
    """``should_stop()``, when given, is asked after every generated token; True ends generation (a cancel)."""
    import torch

    kwargs = {"images": images, "return_tensors": "pt"}
    text = _prompts(c, len(images), prefix, instruction)
    if text is None and c.arch.decoder_only and c.arch.label == "BLIP-2":
        text = [""] * len(images)  # the processor puts the query-token placeholders in front of it
    if text is not None:
        kwargs["text"] = text
    batch = c.processor(**kwargs)
    batch = {k: (v.to(c.device, dtype=c.dtype) if k == "pixel_values" else v.to(c.device)) for k, v in batch.items()
             if k != "token_type_ids"}
    if c.arch.label == "GIT" and not prefix:
        batch.pop("input_ids", None)
        batch.pop("attention_mask", None)
    # never past the text decoder's position table
    cfg = getattr(c.model.config, "text_config", None) or c.model.config
    limit = getattr(cfg, "max_position_embeddings", None)
    used = batch["input_ids"].shape[1] if "input_ids" in batch else 1
    if limit:
        max_tokens = max(1, min(max_tokens, limit - used))
    extra = {}
    if should_stop is not None:
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), bool(should_stop()), dtype=torch.bool,
                                  device=input_ids.device)

        extra["stopping_criteria"] = StoppingCriteriaList([_Stop()])
    with torch.inference_mode():
        out = c.model.generate(**batch, max_new_tokens=max_tokens, num_beams=num_beams, do_sample=False, **extra)
    if c.arch.decoder_only and "input_ids" in batch and out.shape[1] >= batch["input_ids"].shape[1]:
        out = out[:, batch["input_ids"].shape[1]:]
        texts = c.processor.batch_decode(out, skip_special_tokens=True)
        texts = [(prefix + " " + t) if prefix else t for t in texts]
    else:
        texts = c.processor.batch_decode(out, skip_special_tokens=True)
    return [" ".join(t.split()) for t in texts]
