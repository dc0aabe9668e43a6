"""Trivial, importable task functions used by the benchmarks (workers import them by name)."""

from __future__ import annotations


def square(x: int) -> int:
    """Return ``x * x`` (a task whose cost is pure framework overhead)."""
    return x * x


def square_list(xs: list[int]) -> list[int]:
    """Square every item of a chunk."""
    return [x * x for x in xs]
