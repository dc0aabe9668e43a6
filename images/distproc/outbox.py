"""Results waiting to go to the master, kept per job across reconnects, and what to send
instead when a result cannot go."""

from __future__ import annotations

import pickle
from collections import defaultdict
from typing import Any


def error_text(exc: BaseException) -> str:
    """An exception as a task's error: its type and message, bounded."""
    return f"{type(exc).__name__}: {exc}"[:500]


def picklable(oks: list[tuple[int, Any]]) -> tuple[list, list]:
    """Split results into those that pickle and errors for those that don't."""
    good, bad = [], []
    for tid, value in oks:
        try:
            pickle.dumps(value)
        except Exception as exc:
            bad.append((tid, f"result cannot be pickled: {error_text(exc)}"))
        else:
            good.append((tid, value))
    return good, bad


class Outbox:
    """Results waiting to be acknowledged, per job (kept across reconnects)."""

    def __init__(self) -> None:
        self.oks: dict[str, list[tuple[int, Any]]] = defaultdict(list)
        self.errors: dict[str, list[tuple[int, str]]] = defaultdict(list)
        self.busy: dict[str, float] = defaultdict(float)
        self.leases: dict[str, list[int]] = defaultdict(list)

    def jobs(self) -> list[str]:
        return [
            j
            for j in set(self.oks) | set(self.errors) | set(self.leases)
            if self.oks.get(j) or self.errors.get(j) or self.leases.get(j)
        ]

    def take(self, job_id: str) -> tuple[list, list, float, list]:
        return (
            self.oks.pop(job_id, []),
            self.errors.pop(job_id, []),
            self.busy.pop(job_id, 0.0),
            self.leases.pop(job_id, []),
        )

    def put_back(self, job_id: str, oks: list, errors: list, busy: float, leases: list) -> None:
        self.oks[job_id][:0] = oks
        self.errors[job_id][:0] = errors
        self.busy[job_id] += busy
        self.leases[job_id][:0] = leases

    def undeliverable(self, reason: str) -> int:
        """Turn every result waiting to go into an error (the master keeps refusing them)."""
        n = 0
        for job_id, oks in self.oks.items():
            self.errors[job_id].extend((tid, reason) for tid, _ in oks)
            n += len(oks)
            oks.clear()
        return n

    def __len__(self) -> int:
        return sum(len(v) for v in self.oks.values()) + sum(len(v) for v in self.errors.values())
