"""The job ledger: leases, retries, dead letters and exactly-once accounting.

Pure bookkeeping, no networking: the broker calls it under one lock. Task ids are the
indexes ``0..n-1`` of the job, and per-task state lives in flat lists, so that the hot
path (lease a batch, accept a batch of results) costs a few list operations per task.

Every task ends in exactly one final state:

- ``OK``: a result was accepted (the first one to arrive; later ones count as duplicates);
- ``FAILED``: the task raised and the job does not retry errors;
- ``DEAD``: ``max_attempts`` attempts were used up by errors, crashes or expired leases.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .spec import JobSpec

PENDING, LEASED, OK, FAILED, DEAD = range(5)
STATE_NAMES = ("pending", "leased", "ok", "failed", "dead")
FINAL = (OK, FAILED, DEAD)

EXPIRED = "lease expired: the worker died, hung or was cut off, or the task ran past task_timeout"
LEASED_GUARANTEE = "at-least-once execution, exactly-once accounting"
CLASSIC_GUARANTEE = "at-most-once: a task held by a worker that dies is lost (the tutorial's rule)"


@dataclass
class Lease:
    """A batch of tasks held by one worker until ``deadline`` (renewed by heartbeats)."""

    id: int
    worker: int
    deadline: float
    tids: list[int]
    last_renewal: float = float("inf")  # no deadline is extended past this


@dataclass
class WorkerTally:
    """One worker's share of one job."""

    tasks: int = 0
    busy: float = 0.0
    failed: int = 0
    duplicates: int = 0
    peers: Counter[str] = field(default_factory=Counter)


class Ledger:
    """The state of one job's tasks."""

    _lease_ids = itertools.count(1)

    def __init__(
        self,
        job_id: str,
        spec: JobSpec,
        payloads: list[Any],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        n = len(payloads)
        self.id = job_id
        self.spec = spec
        self.payloads = payloads
        self.clock = clock
        self.state = [PENDING] * n
        self.attempts = [0] * n
        self.holder = [0] * n
        self.values: list[Any] = [None] * n
        self.by_worker = [-1] * n
        self.by_peer = [-1] * n
        self.errors: dict[int, str] = {}
        self.pending: deque[int] = deque(range(n))
        self.leases: dict[int, Lease] = {}
        self.peer_names: list[str] = []
        self._peer_index: dict[str, int] = {}
        self.tally: dict[int, WorkerTally] = {}
        self.final = 0
        self.counts = Counter()  # ok, failed, dead, duplicates, stale, expired, retries
        self.submitted = clock()
        self.started: float | None = None if n else self.submitted  # first task handed out
        self.finished: float | None = None if n else self.submitted

    # -- queries ---------------------------------------------------------------------------
    @property
    def total(self) -> int:
        return len(self.payloads)

    @property
    def done(self) -> bool:
        return self.final == self.total

    def progress(self) -> dict[str, Any]:
        c = self.counts
        return {
            "job": self.id,
            "total": self.total,
            "done": self.final,
            "ok": c["ok"],
            "failed": c["failed"],
            "dead": c["dead"],
            "duplicates": c["duplicates"],
            "finished": self.done,
        }

    def mark_started(self) -> None:
        """The first task left the master: the job's clock starts here."""
        if self.started is None:
            self.started = self.clock()

    def _tally(self, worker: int) -> WorkerTally:
        t = self.tally.get(worker)
        if t is None:
            t = self.tally[worker] = WorkerTally()
        return t

    def _peer(self, peer: str) -> int:
        i = self._peer_index.get(peer)
        if i is None:
            i = self._peer_index[peer] = len(self.peer_names)
            self.peer_names.append(peer)
        return i

    # -- leasing ---------------------------------------------------------------------------
    def lease(self, worker: int, want: int, active_workers: int = 1) -> Lease | None:
        """Hand out up to ``want`` pending tasks (at most a batch, and a fair share at the end)."""
        if want <= 0 or not self.pending:
            return None
        share = math.ceil(len(self.pending) / max(1, active_workers))
        n = min(want, self.spec.batch, max(1, share))
        now = self.clock()
        lease = Lease(
            next(self._lease_ids),
            worker,
            now + self.spec.lease_seconds,
            [],
            now + self.spec.task_timeout,
        )
        tids = lease.tids
        state, attempts, holder, pending = self.state, self.attempts, self.holder, self.pending
        lid = lease.id
        while pending and len(tids) < n:
            tid = pending.popleft()
            if state[tid] != PENDING:
                continue  # accepted while waiting for a retry: dropped lazily here
            state[tid] = LEASED
            attempts[tid] += 1
            holder[tid] = lid
            tids.append(tid)
        if not tids:
            return None
        self.mark_started()
        self.leases[lid] = lease
        return lease

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
        late = [lid for lid, lease in self.leases.items() if lease.deadline < now]
        n = 0
        for lid in late:
            lease = self.leases.pop(lid)
            self.counts["expired"] += 1
            for tid in lease.tids:
                if self.state[tid] == LEASED and self.holder[tid] == lid:
                    n += 1
                    self._retry_or_bury(tid, EXPIRED, retry=True)
        return n

    def release(self, worker: int, tids: Iterable[int]) -> int:
        """Give back leased tasks a worker will not run (it is stopping): no attempt is spent."""
        n = 0
        for tid in tids:
            if 0 <= tid < self.total and self.state[tid] == LEASED:
                lease = self.leases.get(self.holder[tid])
                if lease is None or lease.worker != worker:
                    continue
                self.state[tid] = PENDING
                self.attempts[tid] -= 1
                self.holder[tid] = 0
                self.pending.appendleft(tid)
                n += 1
        self._drop_empty_leases(worker)
        return n

    def _drop_empty_leases(self, worker: int) -> None:
        for lid in [lid for lid, lease in self.leases.items() if lease.worker == worker]:
            lease = self.leases[lid]
            if not any(self.state[t] == LEASED and self.holder[t] == lid for t in lease.tids):
                del self.leases[lid]

    # -- results ---------------------------------------------------------------------------
    def accept(
        self,
        worker: int,
        peer: str,
        oks: Iterable[tuple[int, Any]],
        errors: Iterable[tuple[int, str]] = (),
        busy: float = 0.0,
        lease_ids: Iterable[int] = (),
    ) -> tuple[int, int]:
        """Record results from ``worker`` seen on TCP peer ``peer``; returns (accepted, dups).

        The first result for a task wins, whatever lease it came from (a worker whose lease
        expired may still finish first); any later one is counted as a duplicate.
        """
        state, values, by_worker, by_peer = self.state, self.values, self.by_worker, self.by_peer
        total = self.total
        p = self._peer(peer)
        accepted = dups = 0
        for tid, value in oks:
            if not 0 <= tid < total:
                self.counts["stale"] += 1
                continue
            if state[tid] >= OK:
                dups += 1
                continue
            state[tid] = OK
            values[tid] = value
            by_worker[tid] = worker
            by_peer[tid] = p
            accepted += 1
        failed = 0
        for tid, error in errors:
            if not 0 <= tid < total:
                self.counts["stale"] += 1
                continue
            if state[tid] >= OK:
                dups += 1
                continue
            lease = self.leases.get(self.holder[tid]) if state[tid] == LEASED else None
            if lease is None or lease.worker != worker:
                # an error from a lease that already expired: that attempt is spent already
                self.counts["stale"] += 1
                continue
            failed += 1
            self._retry_or_bury(tid, error, retry=self.spec.retry_errors, worker=worker, peer=p)
        tally = self._tally(worker)
        tally.tasks += accepted
        tally.busy += busy
        tally.failed += failed
        tally.duplicates += dups
        if accepted:
            tally.peers[peer] += accepted
        self.counts["ok"] += accepted
        self.counts["duplicates"] += dups
        self.final += accepted
        for lid in lease_ids:
            lease = self.leases.get(lid)
            if lease is not None and all(
                state[t] != LEASED or self.holder[t] != lid for t in lease.tids
            ):
                del self.leases[lid]
        self._maybe_finish()
        return accepted, dups

    def _retry_or_bury(
        self, tid: int, error: str, retry: bool, worker: int = -1, peer: int = -1
    ) -> None:
        self.errors[tid] = error
        self.holder[tid] = 0
        if retry and self.attempts[tid] < self.spec.max_attempts:
            self.state[tid] = PENDING
            self.pending.append(tid)
            self.counts["retries"] += 1
            return
        final = DEAD if retry else FAILED
        self.state[tid] = final
        self.by_worker[tid] = worker
        self.by_peer[tid] = peer
        self.counts[STATE_NAMES[final]] += 1
        self.final += 1
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.finished is None and self.final == self.total:
            self.finished = self.clock()
            self.leases.clear()

    def stop(self, reason: str) -> None:
        """Bury every unfinished task (used when a job is cancelled)."""
        for tid in range(self.total):
            if self.state[tid] not in FINAL:
                self.errors[tid] = reason
                self.state[tid] = DEAD
                self.counts["dead"] += 1
                self.final += 1
        self.pending.clear()
        self._maybe_finish()
