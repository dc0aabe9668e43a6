"""What the library tells its caller while it works; it never prints by itself.

The CLI renders events with rich (``orchestrate.ui``); tests collect them.
"""

from __future__ import annotations

from typing import Protocol


class Events(Protocol):
    """A sink for progress: phases, details, warnings and counters."""

    def step(self, message: str) -> None:
        """A phase begins ("building images", "starting 4 workers")."""

    def info(self, message: str) -> None:
        """A line worth showing."""

    def detail(self, message: str) -> None:
        """A low-priority line (build output): shown plainly in CI, hidden on a terminal."""

    def warn(self, message: str) -> None:
        """Something the user should know."""

    def progress(self, key: str, done: int, total: int, label: str = "") -> None:
        """A counter moved: ``key`` names it ("job", "ready"), ``label`` describes it."""


class NullEvents:
    """Drops everything."""

    def step(self, message: str) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def detail(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def progress(self, key: str, done: int, total: int, label: str = "") -> None:
        pass
