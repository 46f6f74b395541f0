"""What a diffusion node (``generate_image``, ``edit_image``, ``make_video``) does before it loads anything: resolve the
configured model, settle the seed and find the process's model manager."""

from __future__ import annotations

import random
from typing import NamedTuple

from .loaders import Resolved, resolve_model
from .manager import ModelManager, manager_for
from .options import ModelOptions


class Prepared(NamedTuple):
    model: Resolved
    seed: int
    manager: ModelManager


def prepare(options: ModelOptions, seed: int | None, ctx, kind: str = "sd") -> Prepared:
    """The model of ``options`` resolved as ``kind`` (source, device, dtype, pipeline class; no weights
    loaded), the seed (``seed``, or one drawn now for the node to record in its outputs) and the manager of
    ``ctx``."""
    model = resolve_model(options.model, kind, options.device, options.dtype)
    drawn = seed if seed is not None else random.SystemRandom().randrange(2**31)
    return Prepared(model, drawn, manager_for(ctx))
