"""The node contract: what a node type declares and what it is given when it runs.

A node is a class with a docstring, a ``type`` name and ``version``, pydantic
models for its ``Config`` (literal values, checked when the workflow loads),
its ``Inputs`` (may hold ``${{ }}`` expressions, checked after rendering) and
its ``Outputs``, two flags (``uses_gpu``, ``deterministic``) and one ``run``.
"""

from __future__ import annotations

import logging
import threading
import time
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, WrapValidator

from .artifacts import ArtifactStore, FolderArtifacts
from .sandbox import Rendered


def _keep_rendered(value, handler):
    return value if isinstance(value, Rendered) else handler(value)


# A str input that a node renders as a template: it keeps the marks that say which characters came from
# ``${{ }}`` expressions (data, never to be parsed), see ``pixelmill.sandbox.render_template``.
TemplateText = Annotated[str, WrapValidator(_keep_rendered)]

# Field markers (put them in ``Field(json_schema_extra={...: True})``; editors see them in the schema too):
TEMPLATE_FIELD = "x-pixelmill-template"  # text that is a template by design: a bare '{{ }}' there is meant
WORKFLOW_PATH = "x-pixelmill-path"  # a file path: a relative one is resolved against the workflow file's folder


class Model(BaseModel):
    """Base for node config, inputs and outputs: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")


class Empty(Model):
    """A node with no config or no inputs uses this."""


class ArtifactRef(Model):
    """A file produced by a run, passed between steps by reference, never as bytes."""

    kind: Literal["artifact"] = "artifact"
    run_id: str
    name: str
    media_type: str = "application/octet-stream"


class Cancelled(Exception):
    """Raised inside a node when its step was cancelled or timed out."""


class NoRetry(Exception):
    """A failure that retrying cannot fix (bad input, a failed pre-flight check): the step fails at once.

    Any exception with a false ``retryable`` attribute is treated the same way.
    """

    retryable = False


class Blocked(Exception):
    """Raised by a node that refuses the run on policy grounds (never retried).

    The run ends with status ``blocked``; ``rule`` and ``category`` are recorded
    in the run history as the audit trail.
    """

    def __init__(self, message: str, *, rule: str = "", category: str = ""):
        super().__init__(message)
        self.rule = rule
        self.category = category


class Services:
    """Process-wide shared objects (a model manager, an HTTP session), created once on first use."""

    def __init__(self, initial: dict[str, Any] | None = None):
        self._items: dict[str, Any] = dict(initial or {})
        self._lock = threading.Lock()

    def get(self, key: str, factory=None):
        with self._lock:
            if key not in self._items:
                if factory is None:
                    raise KeyError(f"service '{key}' is not available")
                self._items[key] = factory()
            return self._items[key]

    def values(self):
        with self._lock:
            return list(self._items.values())


class Node:
    """Base class of every node type. Subclasses override the class attributes and ``run``."""

    type: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    Config: ClassVar[type[BaseModel]] = Empty
    Inputs: ClassVar[type[BaseModel]] = Empty
    Outputs: ClassVar[type[BaseModel]] = Empty
    uses_gpu: ClassVar[bool] = False
    deterministic: ClassVar[bool] = False

    def __init__(self, config: BaseModel | None = None):
        self.config = config if config is not None else self.Config()

    def run(self, inputs: BaseModel, ctx: NodeContext) -> BaseModel:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def check_step(cls, check: StepCheck) -> None:
        """Optional load-time check of one step, beyond what the ``Config`` and ``Inputs`` models say.

        Called by the loader for every step whose config is valid. Report with ``check.warn`` (the
        workflow loads; something will likely fail when it runs) or ``check.error`` (it does not load).
        Never do I/O that can hang or network calls here: this runs on every validate and reload.
        """

    def cacheable(self, inputs: BaseModel) -> bool:
        """Whether these inputs always give the same outputs, so the executor may reuse cached ones.

        Defaults to the class flag ``deterministic``; a node that is deterministic only for some calls
        (an image generator given a seed) overrides this.
        """
        return self.deterministic


class NodeContext:
    """What a running node may use: progress, secrets, its run's artifacts, a logger.

    Artifacts go through the run store's artifact store (``artifacts``): ``new_artifact`` reserves a
    name and gives the file to write, ``artifact_path`` a file to read, ``put_artifact`` stores bytes.

    ``services`` holds process-wide shared objects handed in by whoever built the
    engine (a model manager, an HTTP session): nodes look them up by key.
    """

    def __init__(
        self,
        *,
        run_id: str,
        step_id: str,
        workflow: str,
        item_index: int | None = None,
        artifacts_root: Path | None = None,
        artifacts: ArtifactStore | None = None,
        secrets,
        progress_cb=None,
        logger: logging.Logger | None = None,
        cancel_event: threading.Event | None = None,
        run_cancel: threading.Event | None = None,
        services: Services | None = None,
        attempt: int = 1,
        deadline: float | None = None,
    ):
        self.run_id = run_id
        self.step_id = step_id
        self.item_index = item_index  # which item of a for_each step this is (None: not a for_each step)
        self.workflow = workflow
        if artifacts is None:
            if artifacts_root is None:
                raise TypeError("NodeContext needs artifacts or artifacts_root")
            artifacts = FolderArtifacts(artifacts_root)
        self.artifacts = artifacts
        self.artifacts_root = Path(getattr(artifacts, "root", artifacts_root or "."))
        self.secrets = secrets
        self._progress_cb = progress_cb
        self.logger = logger or logging.getLogger(f"pixelmill.node.{step_id}")
        self.cancel_event = cancel_event or threading.Event()  # this step (timeout)
        self._run_cancel = run_cancel  # the whole run (cancel request)
        self.services = services if services is not None else Services()
        self.attempt = attempt
        self.deadline = deadline  # time.monotonic() at which the step times out (None: no timeout)

    @property
    def run_dir(self) -> Path:
        """The run's folder in a folder artifact store (prefer ``new_artifact``/``put_artifact``)."""
        path = self.artifacts_root / self.run_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def artifact_path(self, ref: ArtifactRef) -> Path:
        """A local file holding an artifact of this or an earlier run (names are plain file names)."""
        return self.artifacts.path(ref.run_id, ref.name)

    def _base(self, name: str) -> str:
        return f"{self.step_id}-{name}" if self.item_index is None else f"{self.step_id}-{self.item_index}-{name}"

    def new_artifact(self, name: str, media_type: str) -> tuple[ArtifactRef, Path]:
        """Reserve a fresh artifact name in this run (``name`` gets the step id as prefix) and the file to
        write it to."""
        stored, path = self.artifacts.reserve(self.run_id, self._base(name))
        return ArtifactRef(run_id=self.run_id, name=stored, media_type=media_type), path

    def put_artifact(self, name: str, data: bytes, media_type: str) -> ArtifactRef:
        """Store ``data`` as a fresh artifact of this run (``name`` gets the step id as prefix)."""
        stored, _ = self.artifacts.reserve(self.run_id, self._base(name))
        self.artifacts.put(self.run_id, stored, data)
        return ArtifactRef(run_id=self.run_id, name=stored, media_type=media_type)

    def service(self, key: str, factory=None):
        """A process-wide shared object, created by ``factory`` on first use (one per process)."""
        return self.services.get(key, factory)

    def progress(self, value: float, total: float | None = None, message: str = "") -> None:
        """Report progress; raises ``Cancelled`` when the step should stop."""
        if self.cancelled:  # check_cancelled(), one call fewer: nodes report progress in their hot loops
            raise Cancelled(f"step '{self.step_id}' was cancelled")
        if self._progress_cb is not None:
            self._progress_cb(value, total, message)

    @property
    def cancelled(self) -> bool:
        """True once the step timed out (or passed its deadline) or the run was cancelled."""
        return (self.cancel_event.is_set() or (self._run_cancel is not None and self._run_cancel.is_set())
                or (self.deadline is not None and time.monotonic() >= self.deadline))

    def time_left(self) -> float | None:
        """Seconds until the step's timeout (None without one): cap blocking calls, e.g. HTTP timeouts, by it."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def check_cancelled(self) -> None:
        """Raise ``Cancelled`` if the step timed out or the run was cancelled; long nodes call this often."""
        if self.cancelled:
            raise Cancelled(f"step '{self.step_id}' was cancelled")

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; returns True at once (within 0.1 s) when the step is cancelled or times out."""
        end = time.monotonic() + seconds
        while not self.cancelled:
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.cancel_event.wait(min(left, 0.1))
        return True


@dataclass
class StepCheck:
    """What a node's ``check_step`` sees of one step when the workflow loads, and how it reports.

    Paths are relative to the step, e.g. ``("with", "template")`` or ``("config", "c2pa", "cert_chain")``;
    the loader turns them into ``file:line:col``.
    """

    step_id: str
    config: BaseModel  # validated; WORKFLOW_PATH fields already resolved
    with_: dict  # the step's inputs as written: strings may hold ${{ }} expressions
    workflow_dir: Path
    environ: Mapping[str, str]
    issues: list = field(default_factory=list)  # (level, path, message, hint)

    def warn(self, path: tuple, message: str, hint: str = "") -> None:
        self.issues.append(("warning", tuple(path), message, hint))

    def error(self, path: tuple, message: str, hint: str = "") -> None:
        self.issues.append(("error", tuple(path), message, hint))

    @staticmethod
    def is_expression(value) -> bool:
        """Whether a value (or any string inside it) holds a ``${{ }}`` expression: known at run time only."""
        if isinstance(value, str):
            return "${{" in value
        if isinstance(value, dict):
            return any(StepCheck.is_expression(v) for v in value.values())
        if isinstance(value, list):
            return any(StepCheck.is_expression(v) for v in value)
        return False

    @staticmethod
    def did_you_mean(word: str, choices) -> str:
        import difflib

        close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
        return f"did you mean '{close[0]}'?" if close else ""


def _model_of(annotation) -> type[BaseModel] | None:
    for cand in (annotation, *typing.get_args(annotation)):
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            return cand
    return None


def field_marked(model: type[BaseModel], path: tuple, marker: str) -> bool:
    """Whether the field at ``path`` (field names, into nested models) or one above it carries ``marker``."""
    for part in path:
        info = model.model_fields.get(part) if isinstance(part, str) else None
        if info is None:
            return False
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get(marker):
            return True
        model = _model_of(info.annotation)
        if model is None:
            return False
    return False


def resolve_paths(config: BaseModel, base: Path) -> BaseModel:
    """A copy of ``config`` whose relative ``WORKFLOW_PATH`` fields are resolved against ``base``."""
    update = {}
    for name, info in type(config).model_fields.items():
        value = getattr(config, name, None)
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get(WORKFLOW_PATH) and isinstance(value, str) and value:
            path = Path(value).expanduser()
            if not path.is_absolute():
                update[name] = str(base / path)
        elif isinstance(value, BaseModel):
            resolved = resolve_paths(value, base)
            if resolved is not value:
                update[name] = resolved
    return config.model_copy(update=update) if update else config
