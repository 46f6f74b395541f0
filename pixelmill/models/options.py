"""Config fields the model nodes share: which model, on which device, in which precision, GPU serving options."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from ..node import Model

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class ModelOptions(Model):
    model: str = Field("embedded", description="'embedded', a model id (from the local cache) or a folder")
    device: str = Field("auto", description="auto (cuda, then mps, then cpu), cpu, mps, cuda or cuda:N")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: the model family's precision on GPU (bfloat16 for Flux/SD3/Sana, float16 for "
                            "SD/SDXL/PixArt), float32 on cpu")

    @field_validator("model")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model must name 'embedded', a model id or a folder")
        return value.strip()

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        value = value.strip().lower()
        if not _DEVICE.match(value):
            raise ValueError(f"device must be auto, cpu, mps, cuda or cuda:N (got {value!r})")
        return value


class PipelineOptions(ModelOptions):
    """GPU serving options of a diffusers pipeline (each is part of the loaded model's identity)."""

    variant: str | None = Field(None, description="weight variant to load when the model has it, e.g. fp16")
    vae: str | None = Field(None, description="another VAE id/folder, e.g. an fp16-fixed SDXL VAE")
    cpu_offload: Literal["none", "model", "sequential"] = Field(
        "none", description="CUDA only, needs the 'gpu' extra (accelerate): model = whole components move to the "
                            "GPU in turn; sequential = layer by layer (least memory, slowest)")
    vae_slicing: bool = Field(False, description="decode a batch one image at a time (less memory)")
    vae_tiling: bool = Field(False, description="decode large images in tiles (less memory)")
    compile: bool = Field(False, description="torch.compile the denoiser (channels_last), for long-lived workers")

    def load_options(self) -> tuple:
        return (self.variant, self.vae, self.cpu_offload, self.vae_slicing, self.vae_tiling, self.compile)
