"""One attempt of a node: the context it runs in, the GPU lock, the timeout, its outputs checked.

The ``NodeContext`` carries progress (at most 20 events a second), a logger that redacts secrets, the
attempt's and the run's cancel tokens and the deadline. GPU nodes run one at a time (waiting for the GPU
is cancellable). With a timeout the node runs on a thread of its own; when the time is up its cancel
token is set and it gets ``STOP_GRACE_S`` to return before the step fails anyway. What the node returns
must fit its ``Outputs`` model; it is handed on as JSON data.
"""

from __future__ import annotations

import logging
import threading
import time

from pydantic import BaseModel, ValidationError

from ..events import EventKind
from ..node import Cancelled, NodeContext, Services
from ..secrets import Secrets
from ..store import RunStore
from .record import Recorder
from .state import RunState, StepFailure, StepTimeout

log = logging.getLogger("pixelmill.executor")

STOP_GRACE_S = 1.0  # how long a timed-out node gets to notice its cancel token before the step fails anyway


class RunLogger(logging.LoggerAdapter):
    """Formats the message first, then redacts secrets, so no secret reaches a log handler."""

    def __init__(self, logger, secrets: Secrets, extra):
        super().__init__(logger, extra)
        self.secrets = secrets

    def log(self, level, msg, *args, **kwargs):
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            kwargs.setdefault("extra", self.extra)
            self.logger.log(level, self.secrets.redact(text), **kwargs)


class Attempts:
    """Runs one attempt of a node (see the module docstring)."""

    def __init__(self, store: RunStore, recorder: Recorder, services: Services, gpu_lock: threading.Lock):
        self.store = store
        self.recorder = recorder
        self.services = services
        self.gpu_lock = gpu_lock

    def attempt(self, run: RunState, step, info, node, inputs, attempt: int, label: str | None = None,
                index: int | None = None) -> dict:
        label = label or step.id
        cancel = threading.Event()
        last = [0.0]

        def progress(value, total, message):
            now = time.monotonic()
            if now - last[0] < 0.05 and (total is None or value < total):
                return  # at most 20 progress events a second
            last[0] = now
            self.recorder.emit(run, EventKind.STEP_PROGRESS, label, value=value, total=total, message=message)

        ctx = NodeContext(
            run_id=run.run_id, step_id=step.id, item_index=index, workflow=run.loaded.name,
            artifacts=self.store.artifacts,
            secrets=run.secrets, progress_cb=progress,
            logger=RunLogger(logging.getLogger(f"pixelmill.node.{info.type}"), run.secrets,
                             {"run_id": run.run_id, "step_id": label}),
            cancel_event=cancel, run_cancel=run.cancel, services=self.services, attempt=attempt,
            deadline=time.monotonic() + step.timeout if step.timeout is not None else None,
        )
        try:
            result = call_with_timeout(lambda: self._run_node(node, inputs, ctx, info), step.timeout, cancel,
                                       label)
        except Cancelled:
            if ctx.deadline is not None and time.monotonic() >= ctx.deadline and not run.cancel.is_set():
                raise StepTimeout(f"timed out after {step.timeout:g} s") from None  # it saw its deadline first
            raise
        if isinstance(result, BaseModel) and not isinstance(result, info.cls.Outputs):
            result = result.model_dump()
        if not isinstance(result, info.cls.Outputs):
            try:
                result = info.cls.Outputs.model_validate(result)
            except ValidationError as exc:
                raise StepFailure(f"node returned outputs that do not match its Outputs model: {exc}") from None
        return result.model_dump(mode="json")

    def _run_node(self, node, inputs, ctx, info):
        if info.cls.uses_gpu:
            while not self.gpu_lock.acquire(timeout=0.1):  # waiting for the GPU is cancellable too
                ctx.check_cancelled()
            try:
                ctx.check_cancelled()
                return node.run(inputs, ctx)
            finally:
                self.gpu_lock.release()
        return node.run(inputs, ctx)


def call_with_timeout(fn, timeout: float | None, cancel: threading.Event, step_id: str):
    if timeout is None:
        return fn()
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the caller
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True, name=f"pixelmill-{step_id}")
    t.start()
    t.join(timeout)
    if t.is_alive():
        cancel.set()  # cooperative nodes stop at their next progress() or check_cancelled()
        t.join(STOP_GRACE_S)
        if t.is_alive():
            log.warning("step '%s': its node did not stop within %g s of its timeout; it keeps running in the "
                        "background (see docs/node-authors.md, 'Timeouts and cancellation')", step_id, STOP_GRACE_S)
        raise StepTimeout(f"timed out after {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]
