"""Text-to-video diffusers pipelines (AnimateDiff, LTX-Video, Wan, CogVideoX, ...) by id or folder, loaded
generically through ``DiffusionPipeline`` under the model rules of ``pixelmill.models`` (offline by default)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..models.locate import ModelNotAvailable, downloads_allowed, not_available_message

# pipeline class names of text-to-video families; a name with 'Video' in it counts too
VIDEO_PIPELINES = ("AnimateDiff", "LTX", "Wan", "CogVideoX", "HunyuanVideo", "Mochi", "Latte", "Allegro",
                   "TextToVideo", "VideoToVideo", "I2VGen", "SkyReels", "Cosmos")


def is_video_pipeline(class_name: str) -> bool:
    return "Video" in class_name or any(class_name.startswith(p) for p in VIDEO_PIPELINES)


def folder_pipeline_class(source: str) -> str | None:
    index = Path(source) / "model_index.json"
    if not index.is_file():
        return None
    try:
        return str(json.loads(index.read_text()).get("_class_name") or "")
    except (OSError, ValueError):
        return None


def not_video(name: str, class_name: str) -> ModelNotAvailable:
    return ModelNotAvailable(
        f"model '{name}' is a {class_name}, not a text-to-video pipeline: mode 'pipeline' needs a video model "
        "such as AnimateDiff, LTX-Video, Wan or CogVideoX (use mode 'morph' to animate a text-to-image model)")


def load_text2video(name: str, source: str, device: str, dtype):
    from diffusers import DiffusionPipeline

    cls = folder_pipeline_class(source)
    if cls is not None and not is_video_pipeline(cls):
        raise not_video(name, cls)  # before loading gigabytes
    kwargs = {} if downloads_allowed() else {"local_files_only": True}
    try:
        pipe = DiffusionPipeline.from_pretrained(source, torch_dtype=dtype, **kwargs)
    except Exception as exc:  # noqa: BLE001 - mapped to a message that says what to do
        if not os.path.isdir(source) and isinstance(exc, OSError):
            raise ModelNotAvailable(not_available_message(name, "text-to-video", exc)) from exc
        raise ModelNotAvailable(f"text-to-video model '{name}' could not be loaded from {source}: {exc}") from exc
    if not is_video_pipeline(type(pipe).__name__):
        raise not_video(name, type(pipe).__name__)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def video_frames(pipe, *, prompt: str, negative_prompt: str | None, frames: int, steps: int | None,
                 guidance: float | None, width: int | None, height: int | None, seed: int) -> list:
    """Run the pipeline and return its frames as PIL images (``output.frames[0]``)."""
    import torch

    kwargs = {"prompt": prompt, "num_frames": frames, "output_type": "pil",
              "generator": torch.Generator(device="cpu").manual_seed(seed)}
    for key, value in (("negative_prompt", negative_prompt), ("num_inference_steps", steps),
                       ("guidance_scale", guidance), ("width", width), ("height", height)):
        if value is not None:
            kwargs[key] = value
    with torch.inference_mode():
        out = pipe(**kwargs)
    result = out.frames[0] if hasattr(out, "frames") else None
    if result is None:
        raise ValueError(f"{type(pipe).__name__} returned no frames")
    return list(result)
