"""pixelmill/server has no import cycles (counting imports inside functions): each blueprint attaches
itself with ``init_app`` and shared lookups live in ``context``."""

from __future__ import annotations

import ast
from pathlib import Path

SERVER = Path(__file__).resolve().parents[1] / "pixelmill" / "server"


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in SERVER.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
        graph[path.stem] = deps
    return graph


def test_no_import_cycles_in_the_server_package():
    graph = _graph()
    cycles = []

    def walk(node, path):
        for dep in sorted(graph.get(node, ())):
            if dep in path:
                cycles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep in graph and len(path) < len(graph):
                walk(dep, path + [dep])

    for start in sorted(graph):
        walk(start, [start])
    assert not cycles, sorted(set(cycles))[:10]
