"""What a cross-section check reports, and the helpers every check module shares."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from pydantic import BaseModel, TypeAdapter, ValidationError

from .errors import Path


class Issue(NamedTuple):
    """A problem at a path in the document (no file position yet)."""

    path: Path
    message: str


def duplicates(section: str, what: str, names: Iterable[tuple[int, str]]) -> list[Issue]:
    """``section[i].name`` for each name used before, at the later use."""
    first: dict[str, int] = {}
    issues = []
    for i, name in names:
        if name in first:
            msg = f"duplicate {what} name {name!r} (first used by {section}[{first[name]}])"
            issues.append(Issue((section, i, "name"), msg))
        else:
            first[name] = i
    return issues


def valid(kind: Any, value: Any) -> Any:
    """``value`` validated as ``kind`` (a model or a type), or None where it is invalid."""
    try:
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            return kind.model_validate(value)
        return TypeAdapter(kind).validate_python(value)
    except ValidationError:
        return None
