"""The leased protocol's messages: ranges of ids, flat lists of payloads and values.

A round of 256 tiny tasks (the lease pickled and unpickled, the payloads, the task, the
results pickled and unpickled, each value checked, each state recorded) cost 1.49 us a task
with ``(id, payload)`` and ``(id, value)`` tuples on one core here, and 0.31 us with ranges
and flat lists (issue 12 measured the transfer alone: 0.47 and 0.07 us). So:

- a lease is ``(job_id, lease_id, lease_seconds, kind, ranges, source)``: ``ranges`` is a
  list of ``(first id, count)``; ``source`` is ``("spec", tasks, size, seed)`` for a job
  built from a spec (the worker makes the payloads itself, ``kinds.Payloads``) or
  ``("payloads", [...])``, the explicit payloads of those ids, flat, in range order;
- results go back in ``exchange(wid, job_id, done, busy, want, wait)``, where ``done`` is a
  list of ``(lease_id, ranges, values, errors)``: ``ranges`` strictly increasing and apart,
  ``values`` flat in id order (one per id of the ranges), ``errors`` a strictly increasing
  list of ``(id, error text)`` for the ids that raised (their place in ``values`` is None);
- ``release(wid, job_id, ranges)`` gives back ranges not run.

Internally the ledger keeps ``[start, stop)`` spans (``ranges.RangeSet``); the wire says
``(first, count)``, converted here only.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .kinds import Payloads, make_payloads
from .ranges import Span

Range = tuple[int, int]  # (first id, count)
Done = tuple[int, list[Range], list[Any], list[tuple[int, str]]]


def to_ranges(spans: list[Span]) -> list[Range]:
    return [(a, b - a) for a, b in spans]


def to_spans(ranges: list[Range]) -> list[Span]:
    return [(first, first + count) for first, count in ranges]


def ranges_of(ids: list[int]) -> list[Range]:
    """Sorted ids as ranges: ``[3, 4, 5, 9]`` is ``[(3, 3), (9, 1)]``."""
    out: list[Range] = []
    for tid in ids:
        if out and sum(out[-1]) == tid:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((tid, 1))
    return out


def lease(job_id: str, lease_id: int, lease_seconds: float, kind: str, spans: list[Span],
          payloads: Any) -> tuple[Any, ...]:  # fmt: skip
    """A lease as it goes to the worker."""
    return (job_id, lease_id, lease_seconds, kind, to_ranges(spans), source(payloads, spans))


def source(payloads: Any, spans: list[Span]) -> tuple[Any, ...]:
    """What a worker needs to know the payloads of ``spans``."""
    if isinstance(payloads, Payloads):
        return ("spec", payloads.count, payloads.size, payloads.seed)
    if len(spans) == 1:
        a, b = spans[0]
        return ("payloads", payloads[a:b])
    return ("payloads", [p for a, b in spans for p in payloads[a:b]])


def check_done(done: list[Done], total: int, job_id: str) -> None:
    """Raise ValueError unless every range and error of ``done`` names tasks of job
    ``job_id`` (ids ``0..total-1``): ranges in order, apart and non-empty, one value per id,
    errors in order and inside the ranges. The broker asks before the ledger changes
    anything, so a malformed batch leaves the job as it was (``calls.done`` checked types)."""
    for lease_id, ranges, values, errors in done:
        end = 0
        for first, count in ranges:
            if first < end or count < 1 or first + count > total:
                raise ValueError(
                    f"range ({first}, {count}) of lease {lease_id}: ranges must be in order, "
                    f"apart and non-empty, within ids 0..{total - 1} of job {job_id}"
                )
            end = first + count
        ids = sum(count for _, count in ranges)
        if len(values) != ids:
            raise ValueError(f"lease {lease_id}: {len(values)} values for {ids} ids")
        i, last = 0, -1
        for tid, _ in errors:
            while i < len(ranges) and sum(ranges[i]) <= tid:
                i += 1
            if tid <= last or i == len(ranges) or tid < ranges[i][0]:
                raise ValueError(
                    f"error for task {tid} of lease {lease_id}: errors must be in order and "
                    "inside the ranges"
                )
            last = tid


@lru_cache(maxsize=4)
def _payloads(kind: str, count: int, size: int, seed: int) -> Payloads:
    return make_payloads(kind, count, size, seed)


def payloads_of(kind: str, ranges: list[Range], src: tuple[Any, ...]) -> list[Any]:
    """The payloads of a lease's ids, flat, in range order (the worker's side of ``source``)."""
    if src[0] == "payloads":
        return src[1]
    spec = _payloads(kind, *src[1:])
    if len(ranges) == 1:
        first, count = ranges[0]
        return spec.span(first, first + count)
    return [p for first, count in ranges for p in spec.span(first, first + count)]
