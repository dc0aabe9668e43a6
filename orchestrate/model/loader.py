"""Load ``cluster.yaml`` into a :class:`Cluster`, reporting every problem as ``file:line:col``."""

from __future__ import annotations

import difflib
import os
import types
import typing
from pathlib import Path as FsPath
from typing import Any, NamedTuple

from distproc.text import plural
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from .checks import Issue, raw_topology_problems, topology_problems, topology_warnings
from .errors import ConfigError, Path, Problem, format_path
from .hosts import PATH_BASE, TESTBED_DIR, HostsFile
from .topology import Cluster
from .yamlsource import Document, Pos, read_yaml


def load_cluster(path: str | FsPath, warnings: list[Problem] | None = None) -> Cluster:
    """Read and validate a cluster file; raise :class:`ConfigError` listing all problems.

    Doubts that are not errors (see ``topology_warnings``) are appended to ``warnings``.
    """
    name = str(path)
    try:
        text = read_text(FsPath(path))
    except Unreadable as exc:
        raise ConfigError([Problem(name, exc.line, exc.col, exc.message)]) from None
    return load_cluster_text(text, name, warnings)


class Unreadable(Exception):
    """A file that cannot be read as text: ``line``/``col`` where it is not UTF-8."""

    def __init__(self, message: str, line: int | None = None, col: int | None = None) -> None:
        super().__init__(message)
        self.message, self.line, self.col = message, line, col


def read_text(path: FsPath) -> str:
    """The UTF-8 text of ``path`` (a BOM is dropped); :class:`Unreadable` says why not."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise Unreadable("file not found") from None
    except IsADirectoryError:
        raise Unreadable("is a directory, not a file") from None
    except OSError as exc:
        raise Unreadable(f"cannot read: {exc.strerror}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise Unreadable("not UTF-8 text", line, col) from None


def load_cluster_text(
    text: str, filename: str = "cluster.yaml", warnings: list[Problem] | None = None
) -> Cluster:
    """Validate cluster YAML given as text; ``filename`` is used in the messages, and the
    paths it holds (a hosts file, key files) are relative to its directory."""
    doc = read_yaml(text)
    source = Source(filename, doc)
    problems = [Problem(filename, p.line, p.col, msg) for p, msg in doc.problems]
    cluster: Cluster | None = None
    if not doc.problems or doc.data is not None:
        if doc.data is None:
            problems.append(_at(filename, doc.root, "the file is empty: expected a mapping"))
        elif not isinstance(doc.data, dict):
            got = _describe(doc.data)
            problems.append(_at(filename, doc.root, f"the top level must be a mapping, not {got}"))
        else:
            data = doc.data
            if isinstance(data.get("hosts"), dict):
                data = {**data, "hosts": source.include_hosts(data["hosts"], problems)}
            try:
                cluster = Cluster.model_validate(data, context={PATH_BASE: source.hosts_base})
            except ValidationError as exc:
                errors = [e for e in exc.errors() if not source.unreadable(tuple(e["loc"]))]
                problems += [source.from_pydantic(err) for err in errors]
                issues = raw_topology_problems(data)
            else:
                issues = topology_problems(cluster)
            problems += [source.from_issue(issue) for issue in issues]
    if problems or cluster is None:
        raise ConfigError(source.in_order(problems))
    if warnings is not None:
        warnings += [source.from_issue(i) for i in topology_warnings(cluster)]
    cluster._source = source
    return cluster


class _Included(NamedTuple):
    filename: str
    doc: Document


class Source:
    """The file a cluster was read from, with its positions, and the hosts file it includes;
    every ``Source`` compares equal (and equal to none), so that it never makes two equal
    clusters differ.

    A path inside the hosts list (``hosts[1].address``) is in the included file, if any; the
    ``hosts`` key itself is in the including file."""

    def __init__(self, filename: str, doc: Document) -> None:
        self.filename = filename
        self.doc = doc
        self.include: _Included | None = None
        self._unreadable: set[Path] = set()

    @property
    def hosts_base(self) -> str:
        """The directory the hosts' relative paths are read from: the file naming them."""
        named_in = self.include.filename if self.include else self.filename
        return os.path.abspath(os.path.dirname(named_in))

    def problem(self, path: Path, message: str) -> Problem:
        return self.from_issue(Issue(path, message))

    def unreadable(self, loc: Path) -> bool:
        """Whether ``loc`` is in a part already reported as unreadable (not to report twice)."""
        bad = self.doc.unreadable | self._unreadable
        if self.include is not None:
            bad = bad | self.include.doc.unreadable
        return any(loc[: len(b)] == b for b in bad)

    def _at(self, path: Path, message: str, *, key: bool = False, whole: bool = False) -> Problem:
        """``message`` at ``path``; ``whole``: the hosts key itself counts as included too."""
        filename, doc = self.filename, self.doc
        inside = len(path) > 1 or (whole and len(path) == 1)
        if self.include is not None and path[:1] == ("hosts",) and inside:
            filename, doc = self.include
        return _at(filename, doc.locate(path, key=key), message, path)

    def from_issue(self, issue: Issue) -> Problem:
        return self._at(issue.path, _where(issue.path, issue.message))

    def from_pydantic(
        self, err: ErrorDetails, prefix: Path = (), root: type[BaseModel] = Cluster
    ) -> Problem:
        """A validation error of ``root`` (read at ``prefix`` of the document) as a problem."""
        loc: Path = (*prefix, *err["loc"])
        kind = err["type"]
        if loc[-1:] == ("[key]",):  # a mapping's key is invalid: point at the key
            return self._at(loc[:-1], _where(loc[:-2], err["msg"]), key=True, whole=True)
        if kind in ("extra_forbidden", "invalid_key"):
            parent, key = loc[:-1], loc[-1]
            if kind == "invalid_key":
                message = f"keys must be strings, not {_describe(key)}"
            else:
                model = _model_at(root, parent[len(prefix) :])
                message = f"unknown key {key!r}" + _suggest(str(key), model)
            return self._at(loc, _where(parent, message), key=True, whole=True)
        if kind == "missing":
            parent = loc[:-1]
            message = f"missing required key {loc[-1]!r}"
            return self._at(parent, _where(parent, message), whole=True)
        return self._at(loc, _where(loc, _message(err)), whole=True)

    def include_hosts(self, raw: dict[Any, Any], problems: list[Problem]) -> Any:
        """The hosts list of the file ``hosts: {file: PATH}`` names, its problems appended to
        ``problems`` at its own positions (None if it cannot be read: then hosts count as
        unreadable, and nothing more is said of them)."""
        hosts = self._read_include(raw, problems)
        if hosts is None:
            self._unreadable.add(("hosts",))
        return hosts

    def _read_include(self, raw: dict[Any, Any], problems: list[Problem]) -> Any:
        if "file" not in raw:
            message = "expected a list of hosts, or {file: PATH} to include a hosts file"
            problems.append(self._at(("hosts",), _where(("hosts",), message)))
            return None
        try:
            spec = HostsFile.model_validate(raw)
        except ValidationError as exc:
            errors = [e for e in exc.errors() if not self.unreadable(("hosts", *e["loc"]))]
            problems += [self.from_pydantic(e, ("hosts",), HostsFile) for e in errors]
            return None
        shown = os.path.normpath(os.path.join(os.path.dirname(self.filename), spec.file))
        try:
            text = read_text(FsPath(shown))
        except Unreadable as exc:
            if exc.line is not None:
                problems.append(Problem(shown, exc.line, exc.col, exc.message))
            else:
                message = f"cannot include {shown}: {exc.message}{_testbed_hint(shown, exc)}"
                pos = self.doc.locate(("hosts", "file"), key=True)
                problems.append(_at(self.filename, pos, f"hosts.file: {message}"))
            return None
        doc = read_yaml(text)
        self.include = _Included(shown, doc)
        problems += [Problem(shown, p.line, p.col, msg) for p, msg in doc.problems]
        if doc.data is None:
            if not doc.problems:
                problems.append(_at(shown, doc.root, "the file is empty: expected `hosts:`"))
            return None
        if not isinstance(doc.data, dict):
            got = _describe(doc.data)
            message = f"the top level must be a mapping holding `hosts:`, not {got}"
            problems.append(_at(shown, doc.root, message))
            return None
        for key in doc.data:
            if key != "hosts":
                message = f"unknown key {key!r} (a hosts file holds `hosts:` only)"
                problems.append(_at(shown, doc.locate((key,), key=True), message))
        if "hosts" not in doc.data:
            problems.append(_at(shown, doc.root, "missing required key 'hosts'"))
        return doc.data.get("hosts")

    def in_order(self, problems: list[Problem]) -> list[Problem]:
        """``problems`` file by file (this one first), each file's in line order."""
        return sorted(problems, key=lambda p: (p.file != self.filename, p.line or 0, p.col or 0))

    def __eq__(self, other: object) -> bool:
        return other is None or isinstance(other, Source)

    __hash__ = object.__hash__


def _testbed_hint(shown: str, exc: Unreadable) -> str:
    """What to run when the missing file is the one the test bed writes."""
    parts = FsPath(os.path.abspath(shown)).parts
    n = len(TESTBED_DIR.parts)
    under = any(parts[i : i + n] == TESTBED_DIR.parts for i in range(len(parts) - n + 1))
    if exc.message != "file not found" or not under:
        return ""
    return " (the test bed writes it: run `orchestrate testbed up` first)"


def _at(filename: str, pos: Pos, message: str, path: Path = ()) -> Problem:
    return Problem(filename, pos.line, pos.col, message, path)


def _where(path: Path, message: str) -> str:
    return f"{format_path(path)}: {message}" if path else message


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


def _suggest(key: str, model: type[BaseModel] | None) -> str:
    if model is None:
        return ""
    allowed = [field.alias or name for name, field in model.model_fields.items()]  # for, not for_
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f" ({hint}allowed: {', '.join(allowed)})"


def _model_at(root: type[BaseModel], path: Path) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path`` of a ``root`` document."""
    model = root
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
