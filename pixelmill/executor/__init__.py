"""Run a validated workflow: dependency order, overlap where free, GPU steps one at a time,
retries with backoff, timeouts, conditions, ``on_error``, ``for_each``, output cache, events.

Where each part lives:

- ``scheduler`` - the ``Executor``: claims a run, walks its steps in dependency order, cancels, resumes
  and reuses steps, closes the run with its status and outputs;
- ``step`` - one step: condition, inputs, output cache, attempts with retries, failure;
- ``items`` - a ``for_each`` step, item by item;
- ``attempt`` - one attempt of a node: its context, the GPU lock, the timeout, its outputs checked;
- ``record`` - events (redacted, stored, published) and failed steps' error records;
- ``outputs`` - what the run store takes (size limit), the cache key, artifacts of cached and resumed steps;
- ``state`` - the run in progress and the results callers get.

The names other code imports stay importable from ``pixelmill.executor``.
"""

from .attempt import STOP_GRACE_S
from .outputs import MAX_STORED_BYTES
from .scheduler import Executor
from .state import RunResult, StepFailure, StepResult, StepTimeout

__all__ = ["Executor", "RunResult", "StepResult", "StepFailure", "StepTimeout", "MAX_STORED_BYTES", "STOP_GRACE_S"]
