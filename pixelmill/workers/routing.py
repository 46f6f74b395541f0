"""Which queue a workflow's runs go to, and how long a run may last (the broker's visibility timeout must be
longer, or Redis hands the message to a second worker while the first still runs it)."""

from __future__ import annotations

from ..loader import LoadedWorkflow

GPU_QUEUE = "gpu"
DEFAULT_QUEUE = "default"
UNBOUNDED_STEP_S = 3600.0  # what a step without a timeout is assumed to take at most


def queue_for(loaded: LoadedWorkflow) -> str:
    """The workflow's ``queue:``; else ``gpu`` when one of its steps uses the GPU; else ``default``."""
    if loaded.workflow.queue:
        return loaded.workflow.queue
    return GPU_QUEUE if any(info.cls.uses_gpu for info in loaded.nodes.values()) else DEFAULT_QUEUE


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
