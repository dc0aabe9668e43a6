"""Sets of task ids kept as ranges, and the queue of ids waiting to be leased.

A lease of 256 ids kept as 256 ints (a list, a dict of holders) cost the master per-task
Python work to hand out, to acknowledge and to take back. Ids are handed out in runs, so a
lease is a few ``[start, stop)`` ranges: handing out, acknowledging and expiring cost per
range, and a range splits where a task fails or is released, and merges again with its
neighbours. Stands alone: no other distproc module is imported.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator

Span = tuple[int, int]  # [start, stop): stop is not in it


class RangeSet:
    """Disjoint half-open ranges of ints, sorted, touching ones merged: ``{0..9, 20..29}``
    is ``[(0, 10), (20, 30)]``. Operations cost O(log r + k) for r ranges, k of them touched."""

    __slots__ = ("_ends", "_size", "_starts")

    def __init__(self, spans: list[Span] | tuple[Span, ...] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._size = 0
        for a, b in spans:
            self.add(a, b)

    def __len__(self) -> int:
        """How many ids (not ranges)."""
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def __iter__(self) -> Iterator[Span]:
        return zip(list(self._starts), list(self._ends), strict=True)

    def __contains__(self, x: int) -> bool:
        i = bisect_right(self._starts, x) - 1
        return i >= 0 and x < self._ends[i]

    def __repr__(self) -> str:
        return f"RangeSet({list(self)})"

    @property
    def pieces(self) -> int:
        """How many ranges."""
        return len(self._starts)

    def add(self, a: int, b: int) -> None:
        """Add ``[a, b)``, merging it with every range it overlaps or touches."""
        if a >= b:
            return
        starts, ends = self._starts, self._ends
        i = bisect_left(ends, a)  # first range ending at or after a: touches or follows it
        j = bisect_right(starts, b)  # ranges starting at or before b
        if i < j:
            a, b = min(a, starts[i]), max(b, ends[j - 1])
            self._size -= sum(ends[k] - starts[k] for k in range(i, j))
        starts[i:j] = [a]
        ends[i:j] = [b]
        self._size += b - a

    def remove(self, a: int, b: int) -> int:
        """Remove ``[a, b)``, splitting a range it cuts; returns how many ids were in it."""
        if a >= b:
            return 0
        starts, ends = self._starts, self._ends
        i = bisect_right(ends, a)  # first range ending after a
        j = bisect_left(starts, b)  # ranges starting before b
        if i >= j:
            return 0
        new_starts, new_ends = [], []
        if starts[i] < a:
            new_starts.append(starts[i])
            new_ends.append(a)
        if ends[j - 1] > b:
            new_starts.append(b)
            new_ends.append(ends[j - 1])
        gone = sum(min(b, ends[k]) - max(a, starts[k]) for k in range(i, j))
        starts[i:j] = new_starts
        ends[i:j] = new_ends
        self._size -= gone
        return gone

    def overlap(self, a: int, b: int) -> list[Span]:
        """The parts of ``[a, b)`` in this set, in order."""
        if a >= b:
            return []
        starts, ends = self._starts, self._ends
        i = bisect_right(ends, a)
        j = bisect_left(starts, b)
        return [(max(a, starts[k]), min(b, ends[k])) for k in range(i, j)]

    def take(self, n: int) -> list[Span]:
        """Remove and return the ``n`` lowest ids (fewer if there are fewer), as ranges."""
        out: list[Span] = []
        starts, ends = self._starts, self._ends
        while n > 0 and starts:
            a, b = starts[0], ends[0]
            if b - a <= n:
                del starts[0], ends[0]
            else:
                b = starts[0] = a + n
            out.append((a, b))
            n -= b - a
            self._size -= b - a
        return out


class PendingQueue:
    """The ids waiting to be leased, in the order they go out: released ones first (a
    stopping worker gave them back unstarted), then the never-leased ones (a cursor, so a
    10M-task job costs two ints here), then retries (after an error or an expired lease)."""

    __slots__ = ("back", "fresh", "front", "total")

    def __init__(self, total: int) -> None:
        self.total = total
        self.fresh = 0  # ids from here on were never leased
        self.front = RangeSet()
        self.back = RangeSet()

    def __len__(self) -> int:
        return len(self.front) + (self.total - self.fresh) + len(self.back)

    @property
    def pieces(self) -> int:
        return self.front.pieces + self.back.pieces + 1

    def take(self, n: int) -> list[Span]:
        """Up to ``n`` ids, as few ranges as their order allows."""
        out = self.front.take(n)
        n -= sum(b - a for a, b in out)
        if n > 0 and self.fresh < self.total:
            stop = min(self.total, self.fresh + n)
            _extend(out, (self.fresh, stop))
            n -= stop - self.fresh
            self.fresh = stop
        for span in self.back.take(n) if n > 0 else ():
            _extend(out, span)
        return out

    def put_front(self, a: int, b: int) -> None:
        self.front.add(a, b)

    def put_back(self, a: int, b: int) -> None:
        self.back.add(a, b)

    def discard(self, a: int, b: int) -> None:
        """Ids that became final while waiting (a late result): they leave the queue."""
        self.front.remove(a, b)
        self.back.remove(a, b)

    def clear(self) -> None:
        self.front, self.back, self.fresh = RangeSet(), RangeSet(), self.total


def _extend(out: list[Span], span: Span) -> None:
    """Append ``span``, merged into the last one when they touch."""
    if out and out[-1][1] == span[0]:
        out[-1] = (out[-1][0], span[1])
    else:
        out.append(span)
