"""Loading text-to-image pipelines and BLIP captioners through the stock diffusers/transformers paths."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .locate import ModelNotAvailable, downloads_allowed, not_available_message, resolve

DTYPES = ("auto", "float32", "float16", "bfloat16")
DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(preference: str = "auto") -> str:
    import torch

    if preference != "auto":
        if preference.startswith("cuda") and not torch.cuda.is_available():
            raise ModelNotAvailable(f"device '{preference}' was asked for but CUDA is not available here")
        if preference == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ModelNotAvailable("device 'mps' was asked for but it is not available here")
        return preference
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str, preference: str = "auto"):
    import torch

    if preference == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if _prefers_bf16() else torch.float16
        if device == "mps":
            return torch.float16
        return torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[preference]


def _prefers_bf16() -> bool:
    # fp16 is the common choice for SD weights (their VAE overflows less in fp16 than people fear at
    # 512 px only with the fp16-fixed VAE); PIXELMILL_CUDA_DTYPE=bfloat16 switches on Ampere and newer.
    return os.environ.get("PIXELMILL_CUDA_DTYPE", "").lower() == "bfloat16"


@dataclass(frozen=True)
class Resolved:
    name: str  # what the user wrote ('embedded', an id or a folder)
    source: str  # a folder path or a hub id
    device: str
    dtype: Any

    @property
    def key(self) -> tuple:
        return (self.source, self.device, str(self.dtype).replace("torch.", ""))


def resolve_model(model: str, kind: str, device: str = "auto", dtype: str = "auto") -> Resolved:
    name, source = resolve(model, kind)
    dev = pick_device(device)
    return Resolved(name, source, dev, pick_dtype(dev, dtype))


def _quiet() -> None:
    """No tqdm bars from loading in a server log."""
    import warnings

    warnings.filterwarnings("ignore", message=".*torch_dtype.*is deprecated", category=FutureWarning)
    # diffusers' load_config passes local_dir_use_symlinks="auto" to hf_hub_download, which huggingface_hub
    # ignores with a UserWarning on every load of a hub id: nothing a user could act on.
    warnings.filterwarnings("ignore", message="The `local_dir_use_symlinks` argument is deprecated",
                            category=UserWarning, module=r"huggingface_hub\.")
    try:
        import diffusers.utils.logging as dlog
        import transformers.utils.logging as tlog

        dlog.disable_progress_bar()
        tlog.disable_progress_bar()
    except Exception:  # noqa: BLE001 - cosmetics only
        pass


def _offline_kwargs() -> dict:
    return {} if downloads_allowed() else {"local_files_only": True}


def _is_missing(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return isinstance(exc, OSError) or any(
        s in text for s in ("not found", "does not appear to have", "offline", "local_files_only", "couldn't connect",
                            "cannot find", "no such file", "connection", "is not a local folder"))


def load_text2image(r: Resolved):
    """A diffusers text-to-image pipeline (``AutoPipelineForText2Image``), progress bar off, on its device."""
    from diffusers import AutoPipelineForText2Image

    _quiet()
    try:
        pipe = AutoPipelineForText2Image.from_pretrained(r.source, torch_dtype=r.dtype, **_offline_kwargs())
    except Exception as exc:  # noqa: BLE001 - mapped to a message that says what to do
        if _is_missing(exc) and not os.path.isdir(r.source):
            raise ModelNotAvailable(not_available_message(r.name, "text-to-image", exc)) from exc
        raise ModelNotAvailable(f"text-to-image model '{r.name}' could not be loaded from {r.source}: {exc}") from exc
    pipe = pipe.to(r.device)
    pipe.set_progress_bar_config(disable=True)
    if getattr(pipe, "safety_checker", None) is not None:
        pass  # kept as shipped: a model that brings a safety checker keeps it
    return pipe


@dataclass
class Captioner:
    model: Any
    processor: Any
    device: str
    dtype: Any


def load_captioner(r: Resolved) -> Captioner:
    """A BLIP captioner (``BlipForConditionalGeneration`` + ``BlipProcessor``) on its device."""
    from transformers import BlipForConditionalGeneration, BlipProcessor

    _quiet()
    try:
        processor = BlipProcessor.from_pretrained(r.source, **_offline_kwargs())
        model = BlipForConditionalGeneration.from_pretrained(r.source, dtype=r.dtype, **_offline_kwargs())
    except Exception as exc:  # noqa: BLE001
        if _is_missing(exc) and not os.path.isdir(r.source):
            raise ModelNotAvailable(not_available_message(r.name, "captioning", exc)) from exc
        raise ModelNotAvailable(f"captioning model '{r.name}' could not be loaded from {r.source}: {exc}") from exc
    model = model.to(r.device).eval()
    return Captioner(model, processor, r.device, r.dtype)
