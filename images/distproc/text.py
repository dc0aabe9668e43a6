"""Words and orderings shared by every line a person reads, in the queue program and in
orchestrate (which imports them from here): one definition of each.

``plural`` so that no line says "1 processes"; ``ip_key`` so that addresses are listed as
numbers (``198.18.1.9`` before ``198.18.1.10``), never as text.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 process``, ``2 processes``, ``1 thread``, ``0 entries`` (with ``many="entries"``).

    Only the last word is inflected: ``plural(2, "square task")`` is ``2 square tasks``.
    """
    if n == 1:
        return f"{n} {word}"
    if many is not None:
        return f"{n} {many}"
    return f"{n} {word}es" if word.endswith(("s", "x", "sh", "ch")) else f"{n} {word}s"


def ip_key(text: str) -> tuple[int, int, str]:
    """A sort key for addresses: IPv4 before IPv6, each by its numeric value; anything that
    is not an address (``""``, ``"? x"``) after them all, by its text."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return (99, 0, text)
    return (addr.version, int(addr), text)


def ip_sorted(addresses: Iterable[str]) -> list[str]:
    """``addresses`` in numeric order (see ``ip_key``)."""
    return sorted(addresses, key=ip_key)
