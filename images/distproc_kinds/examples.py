"""An example of a user-defined kind: ``kind: distproc_kinds.examples:collatz``."""

from __future__ import annotations


def collatz(n: int) -> int:
    """Steps for ``n + 1`` to reach 1 in the Collatz sequence."""
    k, steps = n + 1, 0
    while k != 1:
        k = 3 * k + 1 if k % 2 else k // 2
        steps += 1
    return steps
