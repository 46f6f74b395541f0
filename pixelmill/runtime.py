"""The composition root: settings, node registry, run store, event bus and executor, wired once.

The CLI builds one per command; the server builds one per app (``init_app``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from .events import EventBus
from .executor import Executor, RunResult
from .fileinputs import RunFiles
from .inputs import resolve_inputs
from .loader import LoadedWorkflow
from .node import Services
from .registry import Registry
from .settings import Settings
from .store import RunStore


@dataclass
class Runtime:
    settings: Settings
    registry: Registry
    store: RunStore
    bus: EventBus
    executor: Executor
    services: Services = field(default_factory=Services)

    @classmethod
    def create(cls, settings: Settings | None = None, registry: Registry | None = None, environ=None) -> Runtime:
        settings = settings or Settings.from_env()
        registry = registry or Registry.from_entry_points()
        store = RunStore(settings.db_url, artifacts=settings.artifact_store())
        bus = EventBus()
        services = Services({"settings": settings, "store": store})
        executor = Executor(store, bus, services=services, max_workers=settings.max_workers, environ=environ)
        return cls(settings, registry, store, bus, executor, services)

    def submit(self, loaded: LoadedWorkflow, inputs: dict | None = None, *, trigger: dict | None = None,
               trigger_kind: str = "manual") -> str:
        """Check inputs and write a queued run; raises ``InputError`` before anything is stored."""
        run_id = uuid.uuid4().hex
        resolved = resolve_inputs(loaded.workflow.inputs, inputs, RunFiles(self.store.artifacts, run_id))
        return self.store.create_run(loaded.name, inputs=resolved, trigger=trigger or {}, trigger_kind=trigger_kind,
                                     workflow_file=loaded.file, run_id=run_id)

    def run(self, loaded: LoadedWorkflow, inputs: dict | None = None, *, trigger: dict | None = None,
            trigger_kind: str = "manual") -> RunResult:
        """Submit and execute in this thread."""
        run_id = uuid.uuid4().hex
        resolved = resolve_inputs(loaded.workflow.inputs, inputs, RunFiles(self.store.artifacts, run_id))
        self.store.create_run(loaded.name, inputs=resolved, trigger=trigger or {}, trigger_kind=trigger_kind,
                              workflow_file=loaded.file, run_id=run_id)
        return self.executor.execute(loaded, run_id, inputs=resolved, trigger=trigger or {})

    def close(self) -> None:
        self.executor.shutdown()
        for service in self.services.values():
            closer = getattr(service, "close", None)
            if callable(closer) and service is not self.store:
                closer()
        self.store.close()
