"""Load YAML with the safe loader and keep where every key and value came from.

``yaml.compose`` with ``SafeLoader`` builds the node graph (no arbitrary objects
can be created); we turn it into plain data ourselves so that every path
(``("steps", 2, "config", "steps")``) maps to the line and column it was read
from, mapping keys stay the strings the user typed (``on:`` is not ``True``),
and duplicate keys are reported instead of silently overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from .problems import Problem

Path = tuple


@dataclass
class Located:
    data: object
    file: str
    values: dict = field(default_factory=dict)  # path -> (line, col) of the value
    keys: dict = field(default_factory=dict)  # path -> (line, col) of the key naming it
    problems: list = field(default_factory=list)

    def where(self, path: Path, key: bool = False) -> tuple[int, int]:
        """Position for ``path``; falls back to the nearest ancestor that is known."""
        path = tuple(path)
        while True:
            table = self.keys if key and path in self.keys else self.values
            if path in table:
                return table[path]
            if not path:
                return (1, 1)
            path = path[:-1]

    def problem(self, path: Path, message: str, hint: str = "", key: bool = False) -> Problem:
        line, col = self.where(path, key=key)
        return Problem(self.file, line, col, message, hint)


def _pos(node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def load(text: str, file: str) -> Located:
    located = Located(data=None, file=file)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"YAML syntax error: {exc.problem or exc.context}"
        located.problems.append(Problem(file, line, col, message, "check indentation and quoting"))
        return located
    except yaml.YAMLError as exc:  # e.g. ReaderError: a control character in the text
        located.problems.append(Problem(file, 1, 1, f"YAML error: {exc}", "remove control characters from the file"))
        return located
    if root is None:
        located.problems.append(Problem(file, 1, 1, "the file is empty", "a workflow needs at least 'name' and 'steps'"))
        return located
    constructor = yaml.SafeLoader("")  # fresh per load: constructors cache what they built
    located.data = _convert(root, (), located, constructor)
    return located


def _convert(node, path: Path, located: Located, constructor):
    located.values[path] = _pos(node)
    if isinstance(node, yaml.MappingNode):
        out: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                located.problems.append(
                    Problem(located.file, *_pos(key_node), "YAML merge keys ('<<') are not supported", "repeat the keys")
                )
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                located.problems.append(Problem(located.file, *_pos(key_node), "mapping keys must be plain strings"))
                continue
            key = key_node.value
            if key in out:
                located.problems.append(
                    Problem(located.file, *_pos(key_node), f"duplicate key '{key}'", "each key may appear once per mapping")
                )
            located.keys[path + (key,)] = _pos(key_node)
            out[key] = _convert(value_node, path + (key,), located, constructor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (i,), located, constructor) for i, item in enumerate(node.value)]
    try:
        return constructor.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:  # e.g. a date like 2024-02-30
        located.problems.append(Problem(located.file, *_pos(node), f"cannot read this value: {exc}",
                                        "quote it to make it a string"))
        return None
