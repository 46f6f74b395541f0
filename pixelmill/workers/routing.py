"""Which queue a workflow's runs go to, and how long a run may last (the broker's visibility timeout must be
longer, or Redis hands the message to a second worker while the first still runs it)."""

from __future__ import annotations

import re

from ..loader import LoadedWorkflow

GPU_QUEUE = "gpu"
DEFAULT_QUEUE = "default"
UNBOUNDED_STEP_S = 3600.0  # what a step without a timeout is assumed to take at most


def gpu_models(loaded: LoadedWorkflow) -> set[str]:
    """The models (a step config's ``model``) of the workflow's steps whose node uses the GPU."""
    out = set()
    for sid, info in loaded.nodes.items():
        model = getattr(loaded.configs.get(sid), "model", None) if info.cls.uses_gpu else None
        if isinstance(model, str) and model:
            out.add(model)
    return out


def model_queue(model: str) -> str:
    """The queue of runs whose GPU steps use ``model``: ``gpu.<model>`` ('stabilityai/sdxl-turbo' ->
    'gpu.stabilityai-sdxl-turbo'; a folder path -> its last part)."""
    name = model.rstrip("/\\")
    if name.startswith(("/", ".", "~")):
        name = re.split(r"[/\\]", name)[-1]
    return "gpu." + (re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-.") or "model")[:120]


def queue_for(loaded: LoadedWorkflow, per_model: bool = False) -> str:
    """The workflow's ``queue:``; else, when one of its steps uses the GPU, ``gpu`` (with ``per_model``
    and one model used by all its GPU steps: that model's queue, see ``model_queue``); else ``default``."""
    if loaded.workflow.queue:
        return loaded.workflow.queue
    if not any(info.cls.uses_gpu for info in loaded.nodes.values()):
        return DEFAULT_QUEUE
    if per_model:
        models = gpu_models(loaded)
        if len(models) == 1:
            return model_queue(models.pop())
    return GPU_QUEUE


def longest_run_s(loaded: LoadedWorkflow, unbounded_step_s: float = UNBOUNDED_STEP_S) -> float:
    """An upper bound of a run's duration: every step one after the other, every attempt up to its timeout
    (``unbounded_step_s`` for a step without one), plus the waits between attempts."""
    total = 0.0
    for step in loaded.workflow.steps:
        attempts = step.retry.max_attempts
        total += attempts * (step.timeout if step.timeout is not None else unbounded_step_s)
        total += sum(step.retry.wait_before(a) for a in range(2, attempts + 1))
    return total


def check_visibility_timeout(visibility_timeout: float, workflows: list[LoadedWorkflow]) -> list[str]:
    """A warning per workflow whose longest allowed run is not shorter than the visibility timeout."""
    out = []
    for loaded in workflows:
        longest = longest_run_s(loaded)
        if longest >= visibility_timeout:
            out.append(f"workflow '{loaded.name}' may run {longest:.0f} s, not less than the broker visibility "
                       f"timeout ({visibility_timeout:.0f} s): set step timeouts or raise "
                       "PIXELMILL_VISIBILITY_TIMEOUT, or a run still executing is delivered to a second worker "
                       "(the store's claim keeps it from running twice, but it waits for nothing)")
    return out
