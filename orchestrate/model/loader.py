"""Load ``cluster.yaml`` into a :class:`Cluster`, reporting every problem as ``file:line:col``."""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path as FsPath
from typing import Any

from distproc.text import plural
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from .checks import Issue, raw_topology_problems, topology_problems, topology_warnings
from .errors import ConfigError, Path, Problem, format_path
from .topology import Cluster
from .yamlsource import Document, Pos, read_yaml


def load_cluster(path: str | FsPath, warnings: list[Problem] | None = None) -> Cluster:
    """Read and validate a cluster file; raise :class:`ConfigError` listing all problems.

    Doubts that are not errors (see ``topology_warnings``) are appended to ``warnings``.
    """
    name = str(path)
    try:
        raw = FsPath(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError([Problem(name, None, None, "file not found")]) from None
    except IsADirectoryError:
        raise ConfigError([Problem(name, None, None, "is a directory, not a file")]) from None
    except OSError as exc:
        raise ConfigError([Problem(name, None, None, f"cannot read: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError([Problem(name, line, col, "not UTF-8 text")]) from None
    return load_cluster_text(text, name, warnings)


def load_cluster_text(
    text: str, filename: str = "cluster.yaml", warnings: list[Problem] | None = None
) -> Cluster:
    """Validate cluster YAML given as text; ``filename`` is used in the messages."""
    doc = read_yaml(text)
    problems = [Problem(filename, p.line, p.col, msg) for p, msg in doc.problems]
    cluster: Cluster | None = None
    if not doc.problems or doc.data is not None:
        if doc.data is None:
            problems.append(_at(filename, doc.root, "the file is empty: expected a mapping"))
        elif not isinstance(doc.data, dict):
            got = _describe(doc.data)
            problems.append(_at(filename, doc.root, f"the top level must be a mapping, not {got}"))
        else:
            try:
                cluster = Cluster.model_validate(doc.data)
            except ValidationError as exc:
                errors = [e for e in exc.errors() if not _unreadable(doc, tuple(e["loc"]))]
                problems += [_from_pydantic(filename, doc, err) for err in errors]
                issues = raw_topology_problems(doc.data)
            else:
                issues = topology_problems(cluster)
            problems += [_from_issue(filename, doc, issue) for issue in issues]
    if problems or cluster is None:
        problems.sort(key=lambda p: (p.line or 0, p.col or 0))
        raise ConfigError(problems)
    if warnings is not None:
        warnings += [_from_issue(filename, doc, i) for i in topology_warnings(cluster)]
    cluster._source = Source(filename, doc)
    return cluster


class Source:
    """The file a cluster was read from, with its positions; every ``Source`` compares
    equal (and equal to none), so that it never makes two equal clusters differ."""

    def __init__(self, filename: str, doc: Document) -> None:
        self.filename = filename
        self.doc = doc

    def problem(self, path: Path, message: str) -> Problem:
        return _from_issue(self.filename, self.doc, Issue(path, message))

    def __eq__(self, other: object) -> bool:
        return other is None or isinstance(other, Source)

    __hash__ = object.__hash__


def _unreadable(doc: Document, loc: Path) -> bool:
    return any(loc[: len(bad)] == bad for bad in doc.unreadable)


def _at(filename: str, pos: Pos, message: str, path: Path = ()) -> Problem:
    return Problem(filename, pos.line, pos.col, message, path)


def _from_issue(filename: str, doc: Document, issue: Issue) -> Problem:
    return _at(filename, doc.locate(issue.path), _where(issue.path, issue.message), issue.path)


def _where(path: Path, message: str) -> str:
    return f"{format_path(path)}: {message}" if path else message


def _from_pydantic(filename: str, doc: Document, err: ErrorDetails) -> Problem:
    loc: Path = tuple(err["loc"])
    kind = err["type"]
    if kind in ("extra_forbidden", "invalid_key"):
        parent, key = loc[:-1], loc[-1]
        if kind == "invalid_key":
            message = f"keys must be strings, not {_describe(key)}"
        else:
            message = f"unknown key {key!r}" + _suggest(str(key), parent)
        return _at(filename, doc.locate(loc, key=True), _where(parent, message), loc)
    if kind == "missing":
        parent = loc[:-1]
        message = f"missing required key {loc[-1]!r}"
        return _at(filename, doc.locate(parent), _where(parent, message), loc)
    return _at(filename, doc.locate(loc), _where(loc, _message(err)), loc)


_EXPECTED = {
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dict_type": "a mapping",
    "list_type": "a list",
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
}
_BOUNDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}


def _message(err: ErrorDetails) -> str:
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind in _EXPECTED:
        message = f"expected {_EXPECTED[kind]}, got {_describe(value)}"
        if kind == "string_type" and isinstance(value, bool):
            message += " (YAML reads yes/no/on/off/true/false as booleans: quote it)"
        return message
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        shown = bound if isinstance(bound, int) else f"{bound:g}"  # a 64-bit bound in full
        return f"must be {_BOUNDS[kind]} {shown}, got {value!r}"
    if kind == "finite_number":
        return f"must be a finite number, got {value!r}"
    if kind == "too_short":
        return f"must list at least {plural(int(ctx.get('min_length', 1)), 'item')}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}, got {value!r}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        return f"{value!r} must not contain spaces"
    return err["msg"]


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, int):
        return f"{value} (an integer)"
    if isinstance(value, float):
        return f"{value} (a number)"
    if isinstance(value, str):
        return f"{value!r} (a string)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _suggest(key: str, parent: Path) -> str:
    model = _model_at(parent)
    if model is None:
        return ""
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f" ({hint}allowed: {', '.join(allowed)})"


def _model_at(path: Path) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path``."""
    model: type[BaseModel] = Cluster
    for part in path:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        sub = _model_in(field.annotation) if field else None
        if sub is None:
            return None
        model = sub
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (list, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if found := _model_in(arg):
                return found
    return None
