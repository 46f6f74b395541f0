"""The served workflows: loaded from a folder, indexed by name and webhook path, swapped whole on reload."""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..loader import LoadedWorkflow, load_file, load_many, workflow_files
from ..problems import Problem, WorkflowInvalid
from ..registry import Registry

log = logging.getLogger(__name__)


@dataclass
class Catalog:
    """One immutable snapshot: readers take a reference and never see a half-reloaded set."""

    by_name: dict[str, LoadedWorkflow] = field(default_factory=dict)
    routes: list[tuple[list[str], LoadedWorkflow]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)

    def match(self, path: str) -> tuple[LoadedWorkflow, dict] | None:
        """The workflow whose webhook path matches (``:name`` segments capture route parameters)."""
        parts = [p for p in path.strip("/").split("/") if p]
        for pattern, loaded in self.routes:
            if len(pattern) != len(parts):
                continue
            params = {}
            for want, got in zip(pattern, parts, strict=False):
                if want.startswith(":") and len(want) > 1:
                    params[want[1:]] = got
                elif want != got:
                    break
            else:
                return loaded, params
        return None


def _digest(loaded: LoadedWorkflow) -> str:
    return hashlib.sha256(loaded.source.encode()).hexdigest()[:16]


def _build(loaded: list[LoadedWorkflow], problems: list[Problem]) -> Catalog:
    cat = Catalog(problems=list(problems))
    for wf in loaded:
        cat.by_name[wf.name] = wf
        cat.digests[wf.name] = _digest(wf)
        hook = wf.workflow.on.webhook
        if hook is not None:
            cat.routes.append(([p for p in hook.path.strip("/").split("/") if p], wf))
    # literal segments win over parameters: sort by number of parameters
    cat.routes.sort(key=lambda r: sum(1 for p in r[0] if p.startswith(":")))
    return cat


class WorkflowSet:
    def __init__(self, folder: Path | None, registry: Registry):
        self.folder = Path(folder) if folder else None
        self.registry = registry
        self.catalog = Catalog()
        self._lock = threading.Lock()

    def load(self) -> dict:
        """(Re)load the folder; returns what changed: added, changed, removed names and problems."""
        with self._lock:
            if self.folder is None:
                loaded, problems = [], []
            elif not self.folder.is_dir():
                loaded, problems = [], [Problem(str(self.folder), 1, 1, "workflow folder does not exist")]
            else:
                loaded, problems = load_many(workflow_files(self.folder), self.registry)  # never raises
            warnings = [w for wf in loaded for w in wf.warnings]  # served, but likely to fail when run
            new = _build(loaded, problems + warnings)
            old = self.catalog
            added = sorted(set(new.by_name) - set(old.by_name))
            removed = sorted(set(old.by_name) - set(new.by_name))
            changed = sorted(n for n in set(new.by_name) & set(old.by_name) if new.digests[n] != old.digests[n])
            self.catalog = new
        for p in problems:
            log.warning("workflow not served: %s", p)
        for w in warnings:
            log.warning("workflow served with a warning: %s", w)
        return {"added": added, "changed": changed, "removed": removed,
                "problems": [p.to_dict() for p in problems + warnings]}

    def get(self, name: str) -> LoadedWorkflow | None:
        return self.catalog.by_name.get(name)

    def all(self) -> list[LoadedWorkflow]:
        cat = self.catalog
        return [cat.by_name[n] for n in sorted(cat.by_name)]

    def for_run(self, run: dict) -> LoadedWorkflow:
        """The workflow a stored run belongs to: the served one, else its file as it is now."""
        loaded = self.get(run["workflow"])
        if loaded is not None:
            return loaded
        path = run.get("workflow_file")
        if not path:
            raise WorkflowInvalid([Problem("<none>", 1, 1, f"workflow '{run['workflow']}' is no longer served")])
        return load_file(path, self.registry)
