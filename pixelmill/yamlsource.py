"""Load YAML with the safe loader and keep where every key and value came from.

``yaml.compose`` with ``SafeLoader`` builds the node graph (no arbitrary objects
can be created); we turn it into plain data ourselves so that every path
(``("steps", 2, "config", "steps")``) maps to the line and column it was read
from, mapping keys stay the strings the user typed (``on:`` is not ``True``),
and duplicate keys are reported instead of silently overwritten.

The composed document is bounded: nesting depth, the number of values and the
characters of text it expands to (aliases let a few hundred bytes stand for
gigabytes). A breach is reported at the alias that caused it, a recursive alias
at the alias, and tags other than plain mappings and lists are refused on
collections as they are on scalars.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from .problems import Problem

Path = tuple

MAX_DEPTH = 64  # nested mappings and lists
MAX_NODES = 100_000  # values after expanding aliases
MAX_CHARS = 20_000_000  # characters of scalar text after expanding aliases
_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


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

    def problem(self, path: Path, message: str, hint: str = "", key: bool = False, level: str = "error") -> Problem:
        line, col = self.where(path, key=key)
        return Problem(self.file, line, col, message, hint, level)


def _pos(node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _mark_pos(mark) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)


def offset_position(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset in ``text``."""
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


class _Alias:
    """An alias as written (``*name`` at ``mark``), standing for its anchor's node."""

    __slots__ = ("node", "mark", "anchor")

    def __init__(self, node, mark, anchor):
        self.node, self.mark, self.anchor = node, mark, anchor


class _Bounded(Composer):
    """The composer, also keeping aliases visible and bounding the nesting depth."""

    _depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            return _Alias(super().compose_node(parent, index), event.start_mark, event.anchor)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nesting deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Loader(_Bounded, yaml.SafeLoader):
    """Pure-Python scanner and parser: slow, but with the clearest error messages and positions."""


if getattr(yaml, "__with_libyaml__", False):
    from yaml.cyaml import CParser

    class _FastLoader(_Bounded, CParser, SafeConstructor, Resolver):
        """libyaml's scanner and parser (several times faster) feeding the same bounded composer."""

        def __init__(self, text: str):
            CParser.__init__(self, text)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)
else:  # pragma: no cover - PyYAML built without libyaml
    _FastLoader = None


def _compose(text: str):
    """The document's root node. A document libyaml cannot read is read again by the pure-Python parser,
    whose messages and positions are the ones we report."""
    if _FastLoader is not None:
        loader = _FastLoader(text)
        try:
            return loader.get_single_node()
        except yaml.YAMLError:
            pass
        finally:
            loader.dispose()
    loader = _Loader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


class _TooLarge(Exception):
    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


def _syntax_problem(exc: yaml.MarkedYAMLError, text: str, file: str) -> Problem:
    problem, context = exc.problem or "", exc.context or ""
    mark = exc.problem_mark or exc.context_mark
    at_end = mark is not None and (mark.index >= len(text.rstrip()) or "end of stream" in problem
                                   or "<stream end>" in problem)
    if at_end and exc.context_mark is not None and context.startswith(("while scanning", "while parsing")):
        # an unclosed quote or bracket: say where it opens, not where the file ends
        what = context.removeprefix("while scanning ").removeprefix("while parsing ")
        return Problem(file, *_mark_pos(exc.context_mark), f"YAML syntax error: {what} opened here is never closed",
                       "close it, or quote the value")
    line, col = _mark_pos(mark) if mark else (1, 1)
    message = f"YAML syntax error: {problem or context}"
    if exc.context_mark is not None and "flow" in context and exc.context_mark is not mark:
        opened = _mark_pos(exc.context_mark)
        kind = "list" if context.endswith("sequence") else context.split()[-1]
        message += f" (in the {kind} opened at line {opened[0]}, column {opened[1]})"
    return Problem(file, line, col, message, "check indentation and quoting")


def load(text: str, file: str) -> Located:
    located = Located(data=None, file=file)
    try:
        root = _compose(text)
    except yaml.MarkedYAMLError as exc:
        located.problems.append(_syntax_problem(exc, text, file))
        return located
    except yaml.reader.ReaderError as exc:  # a control character (NUL...) in the text
        line, col = offset_position(text, exc.position)
        char = exc.character if isinstance(exc.character, int) else 0
        located.problems.append(Problem(file, line, col, f"character U+{char:04X} is not allowed in YAML",
                                        "remove control characters from the file"))
        return located
    except yaml.YAMLError as exc:
        located.problems.append(Problem(file, 1, 1, f"YAML error: {exc}", "check the file's syntax"))
        return located
    if root is None:
        located.problems.append(Problem(file, 1, 1, "the file is empty", "a workflow needs at least 'name' and 'steps'"))
        return located
    converter = _Converter(located)
    try:
        located.data = converter.convert(root, ())
    except _TooLarge as exc:
        located.problems.append(exc.problem)
        located.data = None
        located.values.clear()
        located.keys.clear()
    return located


class _Converter:
    def __init__(self, located: Located):
        self.located = located
        self.constructor = yaml.SafeLoader("")  # fresh per load: constructors cache what they built
        self.nodes = 0
        self.chars = 0
        self.aliases: list[_Alias] = []  # aliases being expanded, outermost first
        self.open: set[int] = set()  # collections being converted (a recursive alias comes back to one)

    def _problem(self, node_or_alias, message: str, hint: str = "") -> Problem:
        mark = node_or_alias.mark if isinstance(node_or_alias, _Alias) else node_or_alias.start_mark
        return Problem(self.located.file, *_mark_pos(mark), message, hint)

    def _over(self, node, what: str) -> _TooLarge:
        if self.aliases:
            alias = self.aliases[0]
            return _TooLarge(self._problem(alias, f"alias '*{alias.anchor}' expands the document past {what}",
                                           "aliases may not multiply the document; repeat the values instead"))
        return _TooLarge(self._problem(node, f"the document is too large ({what})", "split the workflow"))

    def convert(self, node, path: Path, depth: int = 1):
        if isinstance(node, _Alias):
            if id(node.node) in self.open:
                self.located.values[path] = _mark_pos(node.mark)
                self.located.problems.append(self._problem(
                    node, f"recursive alias '*{node.anchor}': it refers to a value that contains it",
                    "an alias may only repeat a value defined before and outside it"))
                return None
            self.aliases.append(node)
            try:
                return self.convert(node.node, path, depth)
            finally:
                self.aliases.pop()
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self._over(node, f"{MAX_NODES} values")
        if depth > MAX_DEPTH:
            raise self._over(node, f"{MAX_DEPTH} levels of nesting")
        located = self.located
        located.values[path] = _pos(node)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            if node.tag not in _PLAIN_TAGS:
                located.problems.append(self._problem(node, f"tag '{node.tag.replace('tag:yaml.org,2002:', '!!')}' "
                                                            "is not allowed here", "data is never code: remove the tag"))
                return None
            self.open.add(id(node))
            try:
                if isinstance(node, yaml.SequenceNode):
                    return [self.convert(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
                return self._mapping(node, path, depth)
            finally:
                self.open.discard(id(node))
        self.chars += len(node.value)
        if self.chars > MAX_CHARS:
            raise self._over(node, f"{MAX_CHARS} characters of text")
        try:
            return self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:  # e.g. a date like 2024-02-30
            located.problems.append(self._problem(node, f"cannot read this value: {exc}", "quote it to make it a string"))
            return None

    def _mapping(self, node, path: Path, depth: int) -> dict:
        located = self.located
        out: dict = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, _Alias):
                key_node = key_node.node
            if key_node.tag == "tag:yaml.org,2002:merge":
                located.problems.append(self._problem(key_node, "YAML merge keys ('<<') are not supported",
                                                      "repeat the keys"))
                continue
            if not isinstance(key_node, yaml.ScalarNode) or "python/" in key_node.tag:
                located.problems.append(self._problem(key_node, "mapping keys must be plain strings"))
                continue
            key = key_node.value
            if key in out:
                located.problems.append(self._problem(key_node, f"duplicate key '{key}'",
                                                      "each key may appear once per mapping"))
            located.keys[path + (key,)] = _pos(key_node)
            out[key] = self.convert(value_node, path + (key,), depth + 1)
        return out
