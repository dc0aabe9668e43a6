"""The job ledger: leases, retries and results, over the per-task states of ``states.py``.

Pure bookkeeping, no networking: the broker calls it under one lock, after checking every
argument (``wire.check_done``), so a call either applies whole or not at all.

Leases and the pending queue hold ranges of ids (``ranges.py``), so handing out,
acknowledging, releasing and expiring contiguous ids cost per range, not per task: the
per-task work left is C loops over bytes and lists (slice assignment, ``bytes.translate``,
list equality; ``wire.py`` has the measurement). A range splits where a task fails or is
released, and merges again with its neighbours as they come back to the queue.

Until it is final, a leased job's ``LEASED`` id is held by exactly one live lease, and a
``PENDING`` id waits in the queue exactly once (tests/unit/test_ranges.py checks both, and
one final state per id, after every step of random event orders).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import kinds
from .ranges import PendingQueue, RangeSet, Span
from .states import (
    BYTE,
    CLASSIC_GUARANTEE,
    DEAD,
    EXPIRED,
    FAILED,
    LEASED,
    LEASED_GUARANTEE,
    LOST,
    MAX_LISTED,
    OK,
    PENDING,
    STATE_NAMES,
    From,
    TaskStates,
    WorkerTally,
)  # fmt: skip
from .wire import Done

__all__ = ["CLASSIC_GUARANTEE", "DEAD", "FAILED", "LEASED", "LEASED_GUARANTEE", "LOST",
           "MAX_LISTED", "OK", "PENDING", "STATE_NAMES", "Lease", "Ledger",
           "WorkerTally"]  # fmt: skip

_UP = bytes((i + 1) & 255 for i in range(256))  # attempts + 1 over a span (bytes.translate)
_DOWN = bytes((i - 1) & 255 for i in range(256))
_NONE = RangeSet()  # what a lease holds for a worker that does not hold it
_PENDING_RUN = re.compile(re.escape(BYTE[PENDING]) + b"+")


@dataclass
class Lease:
    """Ids held by one worker until ``deadline`` (renewed by heartbeats): ``spans`` as handed
    out; ``held``, what is still out (results and releases take ids out; empty, it ends)."""

    id: int
    worker: int
    deadline: float
    spans: list[Span]
    held: RangeSet
    last_renewal: float = float("inf")  # no deadline is extended past this


class Ledger(TaskStates):
    """One job: its tasks' states, its leases and its queue."""

    _lease_ids = itertools.count(1)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = PendingQueue(self.total)
        self.leases: dict[int, Lease] = {}
        self._used_up = bytes(int(a >= self.spec.max_attempts) for a in range(256))
        #: ids not final when the job was replayed from a journal: a master before the
        #: restart may have leased them, so a result for one is not stale (``_ok``)
        self.from_before = RangeSet()
        self._maybe_finish()

    @classmethod
    def number_leases_from(cls, first: int) -> None:
        """Lease ids of this process start at ``first``: a master restarted on a journal
        numbers its leases past its predecessor's, whose workers may still send results
        under the old ids (``settle`` never trusts a lease id alone: it matches ranges)."""
        cls._lease_ids = itertools.count(first)

    def resume(self) -> None:
        """After a replay (``replay.py``) set the per-task bytes: every id not final waits
        in the queue again, leased or not when the master died, and no live lease is known.
        Runs of pending ids are found in C (``re`` over the bytes), not id by id. None is
        left behind the queue's cursor of never-leased ids: a result may come for any of
        them (``from_before``), and only ranges can be taken out of the queue again."""
        self.queue = PendingQueue(self.total)
        self.queue.fresh = self.total
        self.from_before = RangeSet()
        for m in _PENDING_RUN.finditer(self.state):
            self.queue.put_front(m.start(), m.end())
            self.from_before.add(m.start(), m.end())
        self.leases.clear()

    def pending_count(self) -> int:
        return len(self.queue)

    def held(self) -> Counter[int]:
        """Tasks each worker holds on a lease now, by worker index: per range, not per task
        (what the dashboard shows per worker)."""
        out: Counter[int] = Counter()
        for lease in self.leases.values():
            out[lease.worker] += len(lease.held)
        return out

    def _pieces_in_flight(self) -> int:
        return self.queue.pieces + sum(lease.held.pieces for lease in self.leases.values())

    def _end_in_flight(self) -> None:
        self.leases.clear()
        self.queue.clear()
        self.from_before = RangeSet()

    # -- leasing ---------------------------------------------------------------------------
    def lease(self, worker: int, want: int, active_workers: int = 1) -> Lease | None:
        """Hand out up to ``want`` pending tasks (at most a batch, and a fair share at the end)."""
        pending = len(self.queue)
        if want <= 0 or not pending or self.finished is not None:
            return None
        n = min(want, self.spec.batch, max(1, math.ceil(pending / max(1, active_workers))))
        spans = self.queue.take(n)
        for a, b in spans:
            self._lease_span(a, b)
        now = self.clock()
        lease = Lease(next(self._lease_ids), worker, now + self.spec.lease_seconds, spans,
                      RangeSet(spans), now + self.spec.task_timeout)  # fmt: skip
        self.mark_started()
        self.leases[lease.id] = lease
        return lease

    def _lease_span(self, a: int, b: int) -> None:
        self.state[a:b] = BYTE[LEASED] * (b - a)
        self.attempts[a:b] = self.attempts[a:b].translate(_UP)

    def take(self, who: str = "", peer: str = "") -> int | None:
        """One task for a classic ``get`` (no lease: the classic protocol has no time-outs).
        ``who`` took it from ``peer``: a journal keeps that, since a classic task taken when
        the master dies is lost (``replay.py``)."""
        spans = self.queue.take(1) if self.finished is None else []
        if not spans:
            return None
        tid = spans[0][0]
        self._lease_span(tid, tid + 1)
        self._log(tid, tid + 1, LEASED, None, who, peer)
        self.mark_started()
        return tid

    def renew(self, worker: int) -> int:
        """Extend every lease ``worker`` holds, up to each one's ``task_timeout``."""
        deadline = self.clock() + self.spec.lease_seconds
        n = 0
        for lease in self.leases.values():
            if lease.worker == worker:
                lease.deadline = min(deadline, lease.last_renewal)
                n += 1
        return n

    def expire(self) -> int:
        """Take back the tasks of leases past their deadline; returns how many tasks."""
        now = self.clock()
        n = 0
        for lid in [lid for lid, lease in self.leases.items() if lease.deadline < now]:
            lease = self.leases.pop(lid)
            self.counts["expired"] += 1
            for a, b in lease.held:
                n += b - a
                self._spend(a, b)
        self._maybe_finish()
        return n

    def _spend(self, a: int, b: int) -> None:
        """Leased ids ``[a, b)`` lost an attempt to an expired lease: each goes back to the
        queue, or is dead if its attempts are used up (runs found in the attempts bytes)."""
        used = self.attempts[a:b].translate(self._used_up)
        i = 0
        while i < len(used):
            j = used.find(1 - used[i], i)
            j = len(used) if j < 0 else j
            p, q = a + i, a + j
            if used[i]:
                self._bury(p, q, DEAD, EXPIRED, "", "")
            else:
                self.state[p:q] = BYTE[PENDING] * (q - p)
                self.queue.put_back(p, q)
                self.counts["retries"] += q - p
                self._forget_errors(p, q)
                self.expired.add(p, q)
                self._log(p, q, PENDING, EXPIRED)
            i = j

    def release(self, worker: int, spans: Iterable[Span]) -> int:
        """Give back leased tasks a worker will not run (it is stopping): no attempt is spent."""
        spans = list(spans)
        n = 0
        for lease in [lease for lease in self.leases.values() if lease.worker == worker]:
            for a, b in spans:
                for c, d in lease.held.overlap(a, b):
                    lease.held.remove(c, d)
                    self.state[c:d] = BYTE[PENDING] * (d - c)
                    self.attempts[c:d] = self.attempts[c:d].translate(_DOWN)
                    self.queue.put_front(c, d)
                    n += d - c
            if not lease.held:
                del self.leases[lease.id]
        return n

    # -- results ---------------------------------------------------------------------------
    def settle(self, worker: int, peer: str, done: Sequence[Done],
               busy: float = 0.0) -> tuple[int, int]:  # fmt: skip
        """Record ``done`` from ``worker`` seen on TCP peer ``peer``; returns (accepted,
        duplicates). The ids the named lease still holds are recorded a span at a time;
        any other id one at a time, by ``accept``'s rules (the first result wins, whatever
        lease it came from). ``done`` must have passed ``check_done``."""
        src = self._from(worker, peer)
        src.tally.busy += busy
        tasks, dups = src.tally.tasks, src.tally.duplicates
        if self.finished is not None:  # every task is final: all of these are duplicates
            self._dup(src, sum(len(values) for _, _, values, _ in done))
            return 0, src.tally.duplicates - dups
        for lease_id, ranges, values, errors in done:
            lease = self.leases.get(lease_id)
            held = lease.held if lease is not None and lease.worker == worker else _NONE
            failed = dict(errors)
            pos = 0
            for first, count in ranges:
                shift, cursor = pos - first, first  # the value of id t is values[t + shift]
                for a, b in held.overlap(first, first + count):
                    self._loose(src, cursor, a, values, shift, failed)
                    self._held(src, lease, a, b, values, shift, failed)  # type: ignore[arg-type]
                    cursor = b
                self._loose(src, cursor, first + count, values, shift, failed)
                pos += count
            if lease is not None and not lease.held:
                self.leases.pop(lease_id, None)
        self._maybe_finish()
        return src.tally.tasks - tasks, src.tally.duplicates - dups

    def _held(self, src: From, lease: Lease, a: int, b: int, values: list[Any], shift: int,
              failed: dict[int, str]) -> None:  # fmt: skip
        """Ids ``[a, b)`` of ``lease``, held by the worker that sent them: ok spans between
        the ids that raised."""
        cuts = [t for t in failed if a <= t < b] if failed else []
        p = a
        for t in [*cuts, b]:
            if p < t:
                self._ok_span(src, lease, p, t, values[p + shift : t + shift])
            if t < b:
                self._error(src, t, failed[t], lease)
            p = t + 1

    def _ok_span(self, src: From, lease: Lease, p: int, q: int, values: list[Any]) -> None:
        self.state[p:q] = BYTE[OK] * (q - p)
        lease.held.remove(p, q)
        if self._check is not None:
            wrong = kinds.misses(self.spec.kind, self._payload_span(p, q), values)
            if wrong:
                self._wrong([p + i for i in wrong])
        self._record(src, p, q, values)

    def _loose(self, src: From, p: int, q: int, values: list[Any], shift: int,
               failed: dict[int, str]) -> None:  # fmt: skip
        """Ids ``[p, q)`` not held by the lease that sent them: one at a time, unless every
        one is final already (duplicates, counted at C speed)."""
        if p >= q:
            return
        if self.state.find(PENDING, p, q) < 0 and self.state.find(LEASED, p, q) < 0:
            self._dup(src, q - p)
            return
        for t in range(p, q):
            if t in failed:
                self._error(src, t, failed[t], self._holder(t))
            else:
                self._ok(src, t, values[t + shift])

    def accept(self, worker: int, peer: str, oks: Iterable[tuple[int, Any]],
               errors: Iterable[tuple[int, str]] = ()) -> tuple[int, int]:  # fmt: skip
        """Record results one id at a time (the classic protocol, tests; ids in range), by
        ``settle``'s rules, as from no lease; returns (accepted, duplicates)."""
        done = [(0, [(t, 1)], [v], []) for t, v in oks]
        done += [(0, [(t, 1)], [None], [(t, e)]) for t, e in errors]
        return self.settle(worker, peer, done)

    def _ok(self, src: From, tid: int, value: Any) -> None:
        state = self.state[tid]
        if state >= OK:
            self._dup(src, 1)
            return
        if not self.attempts[tid]:  # never handed out: nobody was asked for this result...
            if tid not in self.from_before:
                self.counts["stale"] += 1
                return
            self.attempts[tid] = 1  # ...unless by the master before a restart: its attempt
        holder = self._holder(tid) if state == LEASED else None
        if holder is not None:  # a late result: its new holder's copy is a duplicate
            holder.held.remove(tid, tid + 1)
            if not holder.held:
                del self.leases[holder.id]
        elif state == PENDING:  # waiting for its retry: it leaves the queue
            self.queue.discard(tid, tid + 1)
        self.state[tid] = OK
        if self._check is not None and not self._check(self.payloads[tid], value):
            self._wrong([tid])
        self._record(src, tid, tid + 1, [value])

    def _error(self, src: From, tid: int, error: str, lease: Lease | None) -> None:
        if self.state[tid] >= OK:
            self._dup(src, 1)
            return
        if lease is None or lease.worker != src.worker or tid not in lease.held:
            self.counts["stale"] += 1  # from a lease that expired: that attempt is spent
            return
        lease.held.remove(tid, tid + 1)
        if not lease.held:
            self.leases.pop(lease.id, None)
        src.tally.failed += 1
        self._retry_or_bury(tid, error, self.spec.retry_errors, src)

    def _holder(self, tid: int) -> Lease | None:
        """The live lease that holds ``tid`` (a scan: live leases are few)."""
        return next((lease for lease in self.leases.values() if tid in lease.held), None)

    def _retry_or_bury(self, tid: int, error: str, retry: bool, src: From) -> None:
        if retry and self.attempts[tid] < self.spec.max_attempts:
            self.errors[tid] = error
            self.expired.remove(tid, tid + 1)
            self.state[tid] = PENDING
            self.queue.put_back(tid, tid + 1)
            self.counts["retries"] += 1
            self._log(tid, tid + 1, PENDING, error, src.name, src.peer)
            return
        self._bury(tid, tid + 1, DEAD if retry else FAILED, error, src.name, src.peer)
