"""Retrying a finished run: what may be retried, which step results are reused, the new run's row.

A retry is a new run with ``retry_of`` set to the run it retries. Steps that succeeded there are not
run again: their stored outputs are reused. Nodes that talk to the outside world map a chain of
retries back to the original run (``post_social``'s ledger does), so a retry finishes an unconfirmed
post instead of making a second one. The server (``POST /api/v1/runs/{id}/retry``) and the CLI
(``pixelmill retry RUN_ID``) share these functions.
"""

from __future__ import annotations

from .loader import LoadedWorkflow
from .status import RunStatus, StepStatus

RETRYABLE = (RunStatus.FAILED.value, RunStatus.BLOCKED.value, RunStatus.CANCELLED.value,
             RunStatus.INTERRUPTED.value)


class NotRetryable(ValueError):
    """The run cannot be retried (it is still going, or it succeeded)."""


def check_retryable(run: dict) -> None:
    if run["status"] not in RETRYABLE:
        raise NotRetryable(f"run {run['id']} is {run['status']}; only failed, blocked, cancelled or interrupted "
                           "runs can be retried")


def reused_outputs(store, old_id: str, loaded: LoadedWorkflow) -> dict[str, dict]:
    """Outputs of the steps that succeeded in the run being retried (and still exist in the workflow)."""
    old = store.get_run(old_id)
    if old is None:
        return {}
    ok = (StepStatus.SUCCEEDED.value, StepStatus.CACHED.value)
    return {s["step_id"]: s["outputs"] or {} for s in old["steps"]
            if s["status"] in ok and s["step_id"] in loaded.nodes}


def create_retry(store, run: dict, loaded: LoadedWorkflow) -> str:
    """Write the queued retry run of ``run`` (same inputs and trigger) and return its id."""
    check_retryable(run)
    return store.create_run(loaded.name, inputs=run.get("inputs") or {}, trigger=run.get("trigger") or {},
                            trigger_kind="retry", workflow_file=loaded.file, retry_of=run["id"])
