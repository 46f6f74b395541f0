"""Node registry: node types found through the ``pixelmill.nodes`` entry-point group.

One registry object per engine (no module-level mutable state). Built-in nodes
and third-party nodes arrive the same way; ``register()`` adds a class by hand
(tests, notebooks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import entry_points

from pydantic import BaseModel

from .node import Node

GROUP = "pixelmill.nodes"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeInfo:
    cls: type[Node]
    source: str  # distribution name, or "registered" for register()

    @property
    def type(self) -> str:
        return self.cls.type

    @property
    def version(self) -> str:
        return self.cls.version


class NodeTypeError(TypeError):
    """A class does not follow the node contract."""


def check_contract(cls) -> None:
    """Raise ``NodeTypeError`` naming what a node class is missing."""
    problems = []
    if not isinstance(cls, type) or not issubclass(cls, Node):
        raise NodeTypeError(f"{cls!r} is not a subclass of pixelmill.node.Node")
    if not cls.type or not isinstance(cls.type, str):
        problems.append("a non-empty 'type' string")
    if not isinstance(cls.version, str) or not cls.version:
        problems.append("a 'version' string")
    if not (cls.__doc__ or "").strip():
        problems.append("a docstring")
    for name in ("Config", "Inputs", "Outputs"):
        model = getattr(cls, name, None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            problems.append(f"'{name}' as a pydantic model")
    if cls.run is Node.run:
        problems.append("a 'run(inputs, ctx)' method")
    if problems:
        raise NodeTypeError(f"node class {cls.__module__}.{cls.__qualname__} needs " + ", ".join(problems))


class Registry:
    def __init__(self) -> None:
        self._nodes: dict[str, NodeInfo] = {}
        self.load_errors: list[str] = []

    @classmethod
    def from_entry_points(cls) -> Registry:
        registry = cls()
        registry.load_entry_points()
        return registry

    def load_entry_points(self) -> None:
        for ep in entry_points(group=GROUP):
            dist = ep.dist.name if ep.dist is not None else "unknown"
            try:
                node_cls = ep.load()
                self._add(node_cls, dist)
            except Exception as exc:  # one broken plugin must not take the engine down
                msg = f"node entry point '{ep.name}' ({ep.value}) from {dist} failed to load: {exc}"
                log.warning(msg)
                self.load_errors.append(msg)

    def register(self, node_cls: type[Node], source: str = "registered") -> type[Node]:
        self._add(node_cls, source)
        return node_cls

    def _add(self, node_cls, source: str) -> None:
        check_contract(node_cls)
        existing = self._nodes.get(node_cls.type)
        if existing is not None and existing.cls is not node_cls:
            # Two packages claim one type: keep the higher version, say so.
            keep = max(existing, NodeInfo(node_cls, source), key=lambda i: _version_key(i.version))
            log.warning("node type '%s' registered twice (%s, %s); using %s", node_cls.type, existing.source, source, keep.source)
            self._nodes[node_cls.type] = keep
            return
        self._nodes[node_cls.type] = NodeInfo(node_cls, source)

    def get(self, type_name: str) -> NodeInfo | None:
        return self._nodes.get(type_name)

    def types(self) -> list[str]:
        return sorted(self._nodes)

    def __iter__(self):
        return iter(self._nodes[name] for name in self.types())

    def __len__(self) -> int:
        return len(self._nodes)


def _version_key(version: str):
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in version.split("."))
