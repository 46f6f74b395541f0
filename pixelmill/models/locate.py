"""Where models come from: the embedded folders, local folders, or the Hugging Face cache (offline by default)."""

from __future__ import annotations

import json
import os
from pathlib import Path

EMBEDDED = "embedded"
ENV_EMBEDDED_DIR = "PIXELMILL_EMBEDDED_DIR"
ENV_ALLOW_DOWNLOADS = "PIXELMILL_ALLOW_DOWNLOADS"

# Recommended call settings for well-known text-to-image models; a folder's own pixelmill.json wins.
KNOWN_DEFAULTS: dict[str, dict] = {
    "stabilityai/sd-turbo": {"steps": 1, "guidance": 0.0, "width": 512, "height": 512},
    "stabilityai/sdxl-turbo": {"steps": 1, "guidance": 0.0, "width": 512, "height": 512},
    "stabilityai/stable-diffusion-xl-base-1.0": {"steps": 30, "guidance": 5.0, "width": 1024, "height": 1024},
    "stable-diffusion-v1-5/stable-diffusion-v1-5": {"steps": 30, "guidance": 7.5, "width": 512, "height": 512},
    "runwayml/stable-diffusion-v1-5": {"steps": 30, "guidance": 7.5, "width": 512, "height": 512},
    "stabilityai/stable-diffusion-2-1": {"steps": 30, "guidance": 7.5, "width": 768, "height": 768},
}
GENERIC_DEFAULTS = {"steps": 30, "guidance": 7.5, "width": None, "height": None}


class ModelNotAvailable(RuntimeError):
    """A model that is not on this machine (and downloads are off), or a broken embedded folder."""


def downloads_allowed(environ=None) -> bool:
    env = os.environ if environ is None else environ
    return env.get(ENV_ALLOW_DOWNLOADS, "").strip().lower() in ("1", "true", "yes", "on")


def embedded_root(environ=None) -> Path:
    """The folder holding ``sd/`` and ``blip/``.

    ``PIXELMILL_EMBEDDED_DIR`` wins; otherwise ``models/embedded`` of the source checkout this package
    runs from (an editable install or a plain checkout). A non-editable install has no such folder next
    to it, so it needs the variable.
    """
    env = os.environ if environ is None else environ
    given = env.get(ENV_EMBEDDED_DIR)
    if given:
        path = Path(given).expanduser()
        if not path.is_dir():
            raise ModelNotAvailable(f"{ENV_EMBEDDED_DIR}={given} is not a folder (it should hold sd/ and blip/)")
        return path
    path = Path(__file__).resolve().parents[2] / "models" / "embedded"
    if path.is_dir():
        return path
    raise ModelNotAvailable(
        "the embedded models were not found next to the pixelmill package (installed without its source "
        f"checkout?): set {ENV_EMBEDDED_DIR} to the checkout's models/embedded folder"
    )


def embedded_path(kind: str, environ=None) -> Path:
    """``kind``: 'sd' (text-to-image) or 'blip' (captioning)."""
    path = embedded_root(environ) / kind
    if not (path / ("model_index.json" if kind == "sd" else "config.json")).is_file():
        raise ModelNotAvailable(
            f"embedded model folder {path} is incomplete; regenerate it with "
            "`python scripts/train_embedded.py --out models/embedded` in the source checkout"
        )
    return path


def resolve(model: str, kind: str, environ=None) -> tuple[str, str]:
    """-> (display name, what to hand to ``from_pretrained``: a folder path or a hub id)."""
    name = model.strip()
    if name == EMBEDDED:
        return EMBEDDED, str(embedded_path(kind, environ))
    path = Path(name).expanduser()
    if path.is_dir():
        return name, str(path.resolve())
    if name.startswith((".", "/", "~")):
        raise ModelNotAvailable(f"model folder '{name}' does not exist")
    return name, name


def folder_defaults(source: str) -> dict | None:
    """The ``defaults`` of a model folder's ``pixelmill.json``, if it has one."""
    path = Path(source) / "pixelmill.json"
    if not path.is_file():
        return None
    try:
        return dict(json.loads(path.read_text()).get("defaults") or {}) or None
    except (OSError, ValueError, AttributeError):
        return None


def known_defaults(model: str) -> dict | None:
    return KNOWN_DEFAULTS.get(model)


def recommended(model: str, source: str) -> dict:
    """Per-model call defaults: the folder's ``pixelmill.json`` ``defaults``, else a known table, else generic."""
    path = Path(source)
    if path.is_dir() and (path / "pixelmill.json").is_file():
        try:
            data = json.loads((path / "pixelmill.json").read_text())
            return {**GENERIC_DEFAULTS, **data.get("defaults", {})}
        except (OSError, ValueError):
            pass
    return {**GENERIC_DEFAULTS, **KNOWN_DEFAULTS.get(model, {})}


def not_available_message(model: str, what: str, exc: BaseException | None = None) -> str:
    detail = f" ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})" if exc is not None and str(exc) else ""
    if downloads_allowed():
        return (
            f"{what} model '{model}' is not on this machine and could not be downloaded (downloads are on: "
            f"PIXELMILL_ALLOW_DOWNLOADS=1){detail}. Check the id, the network and HF_HUB_OFFLINE (must be unset); "
            "gated models also need HF_TOKEN. Or pull it elsewhere with `pixelmill models pull "
            f"{model}` and copy the cache folder over."
        )
    return (
        f"{what} model '{model}' is not on this machine: it is neither a folder nor in the local Hugging Face "
        f"cache, and downloads are off{detail}. Get it with `pixelmill models pull {model}` on a machine with "
        "internet (then copy the cache folder over), or set PIXELMILL_ALLOW_DOWNLOADS=1 to let pixelmill "
        "download it, or use `model: embedded`."
    )
