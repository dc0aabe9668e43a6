"""Errors raised by the model layer, with positions in the user's file."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: A path into the configuration document, e.g. ``("workers", 0, "count")``.
Path = tuple[str | int, ...]


class OrchestrateError(Exception):
    """Base class for expected, user-facing errors; ``exit_code`` is what the CLI returns."""

    exit_code: int = 1


@dataclass(frozen=True)
class Problem:
    """One problem in a configuration file; ``line``/``col`` are 1-based (None if unknown)."""

    file: str
    line: int | None
    col: int | None
    message: str
    path: Path = ()

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class ConfigError(OrchestrateError):
    """The configuration is invalid; ``problems`` lists every problem found."""

    exit_code = 2

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


def format_path(path: Path) -> str:
    """Render a path the way a user reads it: ``workers[0].count``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
