"""Config fields every model node shares: which model, on which device, in which precision."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ..node import Model


class ModelOptions(Model):
    model: str = Field("embedded", description="'embedded', a model id (from the local cache) or a folder")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="auto: cuda, then mps, then cpu")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: float16 on GPU (PIXELMILL_CUDA_DTYPE=bfloat16 to change), float32 on cpu")

    @field_validator("model")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model must name 'embedded', a model id or a folder")
        return value.strip()
