"""A YAML reader that remembers where every key and value is, and rejects duplicate keys.

PyYAML silently keeps the last of two equal keys; here each node is built from the
composed node tree so that positions can be recorded by path (``("workers", 0, "count")``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Path, format_path

_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Pos:
    """A 1-based position."""

    line: int
    col: int

    @classmethod
    def of(cls, mark: yaml.Mark) -> Pos:
        return cls(mark.line + 1, mark.column + 1)


@dataclass
class Document:
    """The data of a YAML document, where its parts are, and the problems met reading it."""

    data: Any = None
    root: Pos = Pos(1, 1)
    values: dict[Path, Pos] = field(default_factory=dict)
    keys: dict[Path, Pos] = field(default_factory=dict)
    problems: list[tuple[Pos, str]] = field(default_factory=list)
    #: paths whose value could not be read (already reported; read as null)
    unreadable: set[Path] = field(default_factory=set)

    def locate(self, path: Path, *, key: bool = False) -> Pos:
        """Position of the key (if ``key``) or value at ``path``, or of its nearest ancestor."""
        if key and path in self.keys:
            return self.keys[path]
        while path:
            if path in self.values:
                return self.values[path]
            path = path[:-1]
        return self.root


class _Loader(yaml.SafeLoader):
    """SafeLoader kept private so that nothing global is modified."""


#: More values than this (aliases expanded) is not a cluster file but an alias bomb.
MAX_VALUES = 100_000


class _TooLarge(Exception):
    pass


def _pos_at(text: str, index: int) -> Pos:
    line = text.count("\n", 0, index) + 1
    return Pos(line, index - (text.rfind("\n", 0, index) + 1) + 1)


def _tab_problem(text: str, mark: yaml.Mark | None) -> str | None:
    """What a tab at ``mark`` means, in the user's terms: PyYAML only says it "cannot start
    any token", which does not say that the cure is spaces. ``None`` if no tab is there."""
    if mark is None or not 0 <= mark.index < len(text) or text[mark.index] != "\t":
        return None
    before = text[text.rfind("\n", 0, mark.index) + 1 : mark.index]
    if not before.strip():
        return "YAML forbids tabs for indentation: indent with spaces"
    return "a tab where YAML expects spaces (YAML forbids tabs for indentation): use spaces"


def read_yaml(text: str) -> Document:
    """Parse one YAML document; every failure becomes a problem rather than an exception."""
    doc = Document()
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is not None:
            doc.root = Pos.of(node.start_mark)
            doc.data = _Builder(loader, doc).build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Pos.of(mark) if mark else Pos(1, 1)
        detail = exc.problem or "invalid YAML"
        if exc.context:
            ctx = exc.context_mark
            where = f", from {ctx.line + 1}:{ctx.column + 1}" if ctx and ctx != mark else ""
            detail = f"{detail} ({exc.context}{where})"
        tab = _tab_problem(text, exc.problem_mark)
        doc.problems.append((pos, tab or f"YAML syntax error: {detail}"))
        doc.data = None
    except yaml.reader.ReaderError as exc:  # a control character, for example
        doc.problems.append(
            (
                _pos_at(text, exc.position),
                f"unreadable character {chr(exc.character)!r} ({exc.reason})",
            )
        )
        doc.data = None
    except yaml.YAMLError as exc:
        doc.problems.append((Pos(1, 1), f"YAML error: {exc}"))
        doc.data = None
    except RecursionError:
        doc.problems.append((Pos(1, 1), "YAML nested too deeply"))
        doc.data = None
    except _TooLarge:
        doc.problems.append(
            (Pos(1, 1), f"more than {MAX_VALUES:,} values once aliases are expanded")
        )
        doc.data = None
    finally:
        if loader is not None:
            loader.dispose()
    return doc


class _Builder:
    def __init__(self, loader: _Loader, doc: Document) -> None:
        self.loader = loader
        self.doc = doc
        self.active: set[int] = set()  # nodes being built, to stop on recursive aliases
        self.built = 0

    def problem(self, node: yaml.Node, message: str, path: Path | None = None) -> None:
        if path is not None:
            self.doc.unreadable.add(path)
            message = f"{format_path(path)}: {message}" if path else message
        self.doc.problems.append((Pos.of(node.start_mark), message))

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.built += 1
        if self.built > MAX_VALUES:
            raise _TooLarge
        if isinstance(node, yaml.ScalarNode):
            try:
                return self.loader.construct_object(node)
            except yaml.constructor.ConstructorError:
                self.problem(node, f"unsupported YAML tag {node.tag!r}", path)
            except ValueError as exc:  # e.g. an impossible date such as 2024-02-30
                self.problem(node, f"cannot read {node.value!r}: {exc}", path)
            return None
        if id(node) in self.active:
            self.problem(node, "recursive YAML alias", path)
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return self.sequence(node, path)
            return self.mapping(node, path)
        finally:
            self.active.discard(id(node))

    def sequence(self, node: yaml.SequenceNode, path: Path) -> list[Any]:
        if node.tag != _SEQ:
            self.problem(node, f"unsupported YAML tag {node.tag!r}")
        items = []
        for i, child in enumerate(node.value):
            self.doc.values[(*path, i)] = Pos.of(child.start_mark)
            items.append(self.build(child, (*path, i)))
        return items

    def mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        if node.tag != _MAP:
            self.problem(node, f"unsupported YAML tag {node.tag!r}")
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(key_node, "a key must be a plain value, not a list or mapping")
                continue
            key = self.build(key_node, path)
            if key in seen:
                first = seen[key].start_mark.line + 1
                self.problem(key_node, f"duplicate key {key!r} (first defined on line {first})")
            else:
                seen[key] = key_node
        try:
            self.loader.flatten_mapping(node)  # resolves '<<' merges; explicit keys win
        except yaml.constructor.ConstructorError as exc:
            self.problem(node, exc.problem or "invalid merge")
            return {}
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.build(key_node, path)
            sub = (*path, key)
            self.doc.keys[sub] = Pos.of(key_node.start_mark)
            # an empty value ("port:") has no position of its own: point at its key
            empty = isinstance(value_node, yaml.ScalarNode) and value_node.value == ""
            empty = empty and value_node.style is None
            self.doc.values[sub] = Pos.of((key_node if empty else value_node).start_mark)
            result[key] = self.build(value_node, sub)
        return result
