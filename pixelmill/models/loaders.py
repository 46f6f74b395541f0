"""Loading text-to-image pipelines and BLIP captioners through the stock diffusers/transformers paths."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .families import family_of, pipeline_class_name
from .locate import ModelNotAvailable, downloads_allowed, not_available_message, resolve

DTYPES = ("auto", "float32", "float16", "bfloat16")
DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(preference: str = "auto") -> str:
    import torch

    if preference != "auto":
        if preference.startswith("cuda") and not torch.cuda.is_available():
            raise ModelNotAvailable(f"device '{preference}' was asked for but CUDA is not available here")
        if preference.startswith("cuda:") and int(preference[5:]) >= torch.cuda.device_count():
            raise ModelNotAvailable(f"device '{preference}' was asked for but this machine has "
                                    f"{torch.cuda.device_count()} CUDA device(s) (cuda:0 ...)")
        if preference == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ModelNotAvailable("device 'mps' was asked for but it is not available here")
        return preference
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str, preference: str = "auto", family_default: str | None = None):
    import torch

    if preference == "auto":
        if device.startswith("cuda"):
            if _prefers_bf16():
                return torch.bfloat16
            return torch.bfloat16 if family_default == "bfloat16" else torch.float16
        if device == "mps":
            return torch.float16
        return torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[preference]


def _prefers_bf16() -> bool:
    # PIXELMILL_CUDA_DTYPE=bfloat16 makes every model bfloat16 on CUDA (Ampere and newer).
    return os.environ.get("PIXELMILL_CUDA_DTYPE", "").lower() == "bfloat16"


@dataclass(frozen=True)
class Resolved:
    name: str  # what the user wrote ('embedded', an id or a folder)
    source: str  # a folder path or a hub id
    device: str
    dtype: Any
    pipeline_class: str | None = None  # text-to-image: model_index.json's _class_name

    @property
    def key(self) -> tuple:
        return (self.source, self.device, str(self.dtype).replace("torch.", ""))


def resolve_model(model: str, kind: str, device: str = "auto", dtype: str = "auto") -> Resolved:
    name, source = resolve(model, kind)
    dev = pick_device(device)
    if kind != "sd":
        return Resolved(name, source, dev, pick_dtype(dev, dtype))
    cls = pipeline_class_name(source)
    fam = family_of(cls)
    return Resolved(name, source, dev, pick_dtype(dev, dtype, fam.cuda_dtype), cls)


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


def pipeline_class(r: Resolved):
    """The pipeline class model_index.json names, imported alone (diffusers' lazy module loads only it);
    AutoPipelineForText2Image when the folder names none we can import."""
    import diffusers

    cls = getattr(diffusers, r.pipeline_class, None) if r.pipeline_class else None
    if cls is None:
        from diffusers import AutoPipelineForText2Image

        return AutoPipelineForText2Image
    return cls


def variant_present(source: str, variant: str) -> bool:
    """Whether a folder holds weight files of ``variant`` (hub ids: assumed, diffusers checks)."""
    path = Path(source)
    if not path.is_dir():
        return True
    return any(f".{variant}." in p.name for p in path.rglob("*") if p.is_file())


def load_text2image(r: Resolved, options=None):
    """A diffusers text-to-image pipeline of the folder's own class, progress bar off, on its device, with
    the GPU serving options of ``options`` (a PipelineOptions) applied."""
    _quiet()
    kwargs = dict(torch_dtype=r.dtype, **_offline_kwargs())
    if options is not None and options.variant and variant_present(r.source, options.variant):
        kwargs["variant"] = options.variant
    try:
        if options is not None and options.vae:
            from diffusers import AutoencoderKL

            vae_name, vae_source = resolve(options.vae, "vae")
            kwargs["vae"] = AutoencoderKL.from_pretrained(vae_source, torch_dtype=r.dtype, **_offline_kwargs())
        pipe = pipeline_class(r).from_pretrained(r.source, **kwargs)
    except Exception as exc:  # noqa: BLE001 - mapped to a message that says what to do
        if _is_missing(exc) and not os.path.isdir(r.source):
            raise ModelNotAvailable(not_available_message(r.name, "text-to-image", exc)) from exc
        raise ModelNotAvailable(f"text-to-image model '{r.name}' could not be loaded from {r.source}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    if options is None:
        return pipe.to(r.device)
    from .gpu import apply_serving_options

    return apply_serving_options(pipe, r.device, options)


def load_captioner(r: Resolved):
    """The captioner of the folder's architecture (BLIP, BLIP-2, GIT, LLaVA) on its device; see captioners.py."""
    from . import captioners

    _quiet()
    try:
        return captioners.load(r, r.name, _offline_kwargs())
    except ModelNotAvailable:
        raise
    except Exception as exc:  # noqa: BLE001
        if _is_missing(exc) and not os.path.isdir(r.source):
            raise ModelNotAvailable(not_available_message(r.name, "captioning", exc)) from exc
        raise ModelNotAvailable(f"captioning model '{r.name}' could not be loaded from {r.source}: {exc}") from exc
