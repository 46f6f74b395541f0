"""The package has no import cycles (imports inside functions count), and the engine (loader, executor,
store, calendar) never imports the server, the dashboard, the CLI or a node, not even through another
module. Read from the source with ``ast``: nothing is imported to check it."""

from __future__ import annotations

import ast
from pathlib import Path

from pixelmill.loader.order import find_cycle

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ("pixelmill.executor", "pixelmill.loader", "pixelmill.store", "pixelmill.calendar")
OUTSIDE = ("pixelmill.server", "pixelmill.web", "pixelmill.cli", "pixelmill_nodes")


def _modules() -> dict[str, Path]:
    out = {}
    for path in (ROOT / "pixelmill").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Full names of what a module imports, anywhere in it (``from .x import y`` gives ``pkg.x.y``)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.update(f"{module}.{a.name}" for a in node.names)
            if node.module:
                found.add(module)
    return found


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Edges between pixelmill modules, and every import of each module (outside ones too)."""
    modules = _modules()
    raw = {name: _imports(name, path) for name, path in modules.items()}
    # a module's own packages are imported before it anyway: ``from . import x`` is no edge back to them
    edges = {name: {i for i in found if i in modules and not (name + ".").startswith(i + ".")}
             for name, found in raw.items()}
    return edges, raw


def _cycle(edges: dict[str, set[str]]) -> list[str]:
    cycle = find_cycle(edges)  # the loader's search for step dependency cycles: any graph of names will do
    return cycle + cycle[:1]


def test_no_import_cycles_in_the_package():
    edges, _ = _graph()
    cycle = _cycle(edges)
    assert not cycle, " -> ".join(cycle)


def test_the_engine_never_reaches_the_server_dashboard_cli_or_a_node():
    edges, raw = _graph()
    seen, todo, via = set(), [m for m in edges if m.startswith(ENGINE)], {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for dep in edges[name]:
            via.setdefault(dep, name)
            todo.append(dep)
    bad = sorted((name, i) for name in seen for i in raw[name] if i.startswith(OUTSIDE))
    assert not bad, [f"{name} imports {i} (reached from the engine through {via.get(name, name)})" for name, i in bad]


def test_the_checks_see_a_cycle_and_an_import_inside_a_function(tmp_path):
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []
    mod = tmp_path / "step.py"
    mod.write_text("from . import state\n\ndef f():\n    from ..server.app import create_app\n")
    found = _imports("pixelmill.executor.step", mod)
    assert {"pixelmill.executor.state", "pixelmill.server.app.create_app"} <= found
    init = tmp_path / "__init__.py"
    init.write_text("from .scheduler import Executor\n")
    assert "pixelmill.executor.scheduler.Executor" in _imports("pixelmill.executor", init)
