"""Results waiting to go to the master, kept per job across reconnects, and what to send
instead when a result cannot go.

Results wait as runs of consecutive ids (``[first, values, errors]``, a value None where its
task raised) and leave as ``wire.Done`` entries: ranges and one flat list of values per lease.
An inline lease is one run; tasks finished on a pool, in any order, are merged into runs when
they leave.
"""

from __future__ import annotations

import pickle
from collections import defaultdict
from typing import Any

from .wire import Done, Range

Run = list[Any]  # [first id, values, [(id, error), ...]]


def error_text(exc: BaseException) -> str:
    """An exception as a task's error: its type and message, bounded."""
    return f"{type(exc).__name__}: {exc}"[:500]


def picklable(done: list[Done]) -> list[Done]:
    """``done`` with every value that does not pickle turned into an error."""
    out = []
    for lease_id, ranges, values, errors in done:
        try:
            pickle.dumps(values)
        except Exception:
            failed = dict(errors)
            values = list(values)
            ids = [t for first, count in ranges for t in range(first, first + count)]
            for i, (tid, value) in enumerate(zip(ids, values, strict=True)):
                if tid in failed:
                    continue
                try:
                    pickle.dumps(value)
                except Exception as exc:
                    failed[tid] = f"result cannot be pickled: {error_text(exc)}"
                    values[i] = None
            errors = sorted(failed.items())
        out.append((lease_id, ranges, values, errors))
    return out


class Outbox:
    """Results waiting to be acknowledged, per job and lease (kept across reconnects)."""

    def __init__(self) -> None:
        self._runs: dict[str, dict[int, list[Run]]] = {}
        self.busy: dict[str, float] = defaultdict(float)
        self._count = 0

    def add(self, job_id: str, lease_id: int, first: int, values: list[Any],
            errors: list[tuple[int, str]] | None = None) -> None:  # fmt: skip
        """A run of consecutive ids from ``first``: one value each (None where it raised)."""
        if not values:
            return
        runs = self._runs.setdefault(job_id, {}).setdefault(lease_id, [])
        runs.append([first, values, errors or []])
        self._count += len(values)

    def add_one(self, job_id: str, lease_id: int, tid: int, value: Any = None,
                error: str | None = None) -> None:  # fmt: skip
        """One task's value, or its error."""
        runs = self._runs.setdefault(job_id, {}).setdefault(lease_id, [])
        if runs and runs[-1][0] + len(runs[-1][1]) == tid:
            runs[-1][1].append(value)
        else:
            runs.append([tid, [value], []])
        if error is not None:
            runs[-1][2].append((tid, error))
        self._count += 1

    def jobs(self) -> list[str]:
        return [job_id for job_id, leases in self._runs.items() if leases]

    def take(self, job_id: str) -> tuple[list[Done], float]:
        """What waits for ``job_id``, as ``wire.Done`` entries, and the busy seconds."""
        done: list[Done] = []
        for lease_id, runs in self._runs.pop(job_id, {}).items():
            self._count -= sum(len(run[1]) for run in runs)
            done += _entries(lease_id, runs)
        return done, self.busy.pop(job_id, 0.0)

    def put_back(self, job_id: str, done: list[Done], busy: float) -> None:
        """Results that did not go (the link broke): they wait for the next session."""
        for lease_id, ranges, values, errors in done:
            pos = 0
            for first, count in ranges:
                errs = [(t, e) for t, e in errors if first <= t < first + count]
                self.add(job_id, lease_id, first, values[pos : pos + count], errs)
                pos += count
        self.busy[job_id] += busy

    def undeliverable(self, reason: str) -> int:
        """Turn every result waiting to go into an error (the master keeps refusing them)."""
        n = 0
        for leases in self._runs.values():
            for runs in leases.values():
                for run in runs:
                    first, values, errors = run
                    failed = dict(errors)
                    n += len(values) - len(failed)
                    failed.update((t, reason) for t in range(first, first + len(values))
                                  if t not in failed)  # fmt: skip
                    run[1], run[2] = [None] * len(values), sorted(failed.items())
        return n

    def __len__(self) -> int:
        return self._count


def _entries(lease_id: int, runs: list[Run]) -> list[Done]:
    """Runs of one lease as few entries as possible: sorted, touching runs merged into one
    range; a run that overlaps an entry (a task run twice) goes to the next one."""
    if len(runs) == 1:  # an inline lease: its list goes as it is
        first, values, errors = runs[0]
        return [(lease_id, [(first, len(values))], values, errors)]
    out: list[Done] = []
    ends: list[int] = []
    for first, values, errors in sorted(runs, key=lambda run: run[0]):
        i = next((i for i, end in enumerate(ends) if end <= first), len(out))
        if i == len(out):
            out.append((lease_id, [], [], []))
            ends.append(first)
        ranges: list[Range] = out[i][1]
        if ranges and ends[i] == first:  # touching: one range
            ranges[-1] = (ranges[-1][0], ranges[-1][1] + len(values))
        else:
            ranges.append((first, len(values)))
        out[i][2].extend(values)
        out[i][3].extend(errors)
        ends[i] = first + len(values)
    return out
