"""A folder of workflows: which files are workflows, and what must be unique across them.

``load_many`` loads each file (a bad file's problems are returned, the others still load) and then
reports workflow names used twice and webhook paths of different files that match the same requests.
Calendar files (``calendar.yaml``, ``*.calendar.yaml``) hold rows of a workflow's ``on.calendar``, not
workflows.
"""

from __future__ import annotations

from pathlib import Path

from ..problems import Problem, WorkflowInvalid
from ..registry import Registry
from .load import LoadedWorkflow, load_file


def load_many(paths, registry: Registry, environ=None) -> tuple[list[LoadedWorkflow], list[Problem]]:
    """Load several files; also report workflow names and webhook routes used twice.

    Never raises for a bad file: its problems are returned and the other files still load.
    """
    loaded, problems = [], []
    for p in paths:
        try:
            loaded.append(load_file(p, registry, environ))
        except WorkflowInvalid as exc:
            problems.extend(exc.problems)
    seen_names: dict[str, LoadedWorkflow] = {}
    routes: list[tuple[list[str], LoadedWorkflow]] = []
    for wf in loaded:
        located = wf.located
        if wf.name in seen_names:
            other = seen_names[wf.name]
            problems.append(located.problem(("name",), f"duplicate workflow name '{wf.name}' (also in {other.file})",
                                            "workflow names must be unique in a folder"))
        seen_names.setdefault(wf.name, wf)
        hook = wf.workflow.on.webhook
        if hook is not None:
            parts = [p for p in hook.path.strip("/").split("/") if p]
            other = next((o for r, o in routes if _routes_clash(parts, r)), None)
            if other is not None:
                theirs = other.workflow.on.webhook.path
                same = theirs.strip("/") == hook.path.strip("/")
                problems.append(located.problem(
                    ("on", "webhook", "path"),
                    f"duplicate webhook path '{hook.path}' (also in {other.file})" if same else
                    f"webhook path '{hook.path}' matches the same requests as '{theirs}' in {other.file}",
                    "each workflow needs its own webhook path" if same else
                    "make a literal segment differ, e.g. 'items/by-id/:id' and 'items/by-name/:name'"))
            else:
                routes.append((parts, wf))
    bad = {p.file for p in problems}
    return [wf for wf in loaded if wf.file not in bad], sorted(problems)


def _routes_clash(a: list[str], b: list[str]) -> bool:
    """Whether two webhook routes match a same request path with neither preferred.

    A literal segment wins over a ':param' one, so routes clash only when they have as many parameters
    and every segment could match the same text.
    """
    if len(a) != len(b):
        return False
    def is_param(seg):
        return seg.startswith(":") and len(seg) > 1
    if sum(map(is_param, a)) != sum(map(is_param, b)):
        return False
    return all(x == y or is_param(x) or is_param(y) for x, y in zip(a, b))


def workflow_files(folder) -> list[Path]:
    """The workflow files of a folder: ``*.yaml``/``*.yml``, except calendar files (``calendar.yaml``,
    ``*.calendar.yaml``: the rows of a workflow's ``on.calendar``, see docs/calendar.md)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()
                  and not is_calendar_file(p))


def is_calendar_file(path: Path) -> bool:
    return path.stem == "calendar" or path.stem.endswith(".calendar")
