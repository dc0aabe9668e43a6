"""The job ledger: leases, retries, dead letters and exactly-once accounting.

Pure bookkeeping, no networking: the broker calls it under one lock, after checking every
argument (``check_results``), so a call either applies whole or not at all.

Memory is bounded by what is in flight, not by what is done. Per task the ledger keeps two
bytes (``state`` and ``attempts``, bytearrays: 20 MB for 10,000,000 tasks, where lists cost
8 bytes a slot plus an int object each); values are checked on arrival, counted, and handed
to a ``ResultSink`` that drops or streams them. Lease holders and last errors are kept only
for tasks not yet final; dead letters only for the first ``MAX_LISTED``. The pending queue is
a cursor over the never-leased ids plus two deques (released tasks first, retries last).
When a job ends its per-task bytes are compressed (``zlib``: a 10M-task job of one state
packs to some 20 KB), which is what keeps the job history small.

Every task ends in exactly one final state:

- ``OK``: a result was accepted (the first one to arrive; later ones count as duplicates);
- ``FAILED``: the task raised and the job does not retry errors;
- ``DEAD``: ``max_attempts`` attempts were used up by errors, crashes or expired leases,
  or the job was cancelled;
- ``LOST``: classic protocol only: the connection that took the task closed before a result
  for it arrived (at-most-once, the tutorial's rule).
"""

from __future__ import annotations

import heapq
import itertools
import math
import sys
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import kinds
from .results import ResultSink
from .spec import JobSpec

PENDING, LEASED, OK, FAILED, DEAD, LOST = range(6)
STATE_NAMES = ("pending", "leased", "ok", "failed", "dead", "lost")
MAX_LISTED = 20  # dead letters, failures, losses and wrong values named in a report

EXPIRED = "lease expired: the worker died, hung or was cut off, or the task ran past task_timeout"
LEASED_GUARANTEE = "at-least-once execution, exactly-once accounting"
CLASSIC_GUARANTEE = "at-most-once: a task held by a worker that dies is lost (the tutorial's rule)"
_BURY = bytes(DEAD if s in (PENDING, LEASED) else s for s in range(256))  # for stop()


class _Named(Sequence[Any]):
    """A finished job's explicit payloads: only those a report names (dead, lost...)."""

    def __init__(self, kept: dict[int, Any], total: int) -> None:
        self._kept, self._total = kept, total

    def __len__(self) -> int:
        return self._total

    def __getitem__(self, tid: Any) -> Any:
        return self._kept.get(tid)


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
        payloads: Sequence[Any],
        clock: Callable[[], float] = time.monotonic,
        sink: ResultSink | None = None,
        worker_name: Callable[[int], str] = str,
    ) -> None:
        n = len(payloads)
        self.id = job_id
        self.spec = spec
        self.payloads = payloads
        self.total = n
        self.clock = clock
        self.sink = sink or ResultSink()
        self.worker_name = worker_name
        self.state = bytearray(n)  # PENDING == 0
        self.attempts = bytearray(n)  # max_attempts <= 255 (spec.py)
        self.holder: dict[int, int] = {}  # leased task -> lease id
        self.errors: dict[int, str] = {}  # last error of a task waiting for its retry
        self.fresh = 0  # ids below this have been leased at least once
        self.front: deque[int] = deque()  # released: handed out first
        self.back: deque[int] = deque()  # retries: handed out after the fresh ids
        self.leases: dict[int, Lease] = {}
        self.tally: dict[int, WorkerTally] = {}
        self.letters: dict[int, list[dict[str, Any]]] = {FAILED: [], DEAD: [], LOST: []}
        self.wrong: list[int] = []
        self.final = 0
        self.counts: Counter[str] = Counter()  # ok failed dead lost duplicates stale ...
        self._check = kinds.checker(spec.kind)
        self._packed: bytes | None = None  # state + attempts, compressed once finished
        self._state_counts: list[int] | None = None
        self.submitted = clock()
        self.started: float | None = None if n else self.submitted  # first task handed out
        self.finished: float | None = None
        self._maybe_finish()

    # -- queries ---------------------------------------------------------------------------
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
            "lost": c["lost"],
            "duplicates": c["duplicates"],
            "finished": self.done,
        }

    def state_counts(self) -> list[int]:
        """How many tasks are in each state, counted from the per-task bytes themselves."""
        if self._state_counts is not None:
            return self._state_counts
        return [self.state.count(s) for s in range(len(STATE_NAMES))]

    def state_of(self, tid: int) -> int:
        """One task's state (unpacks a finished job's bytes: for tests and rare reads)."""
        return self._bytes()[0][tid]

    def attempts_of(self, tid: int) -> int:
        return self._bytes()[1][tid]

    def unfinished(self, limit: int = MAX_LISTED) -> list[int]:
        """The first ``limit`` ids not in a final state."""
        return list(itertools.islice(self._unfinished_ids(), limit))

    def _unfinished_ids(self) -> Iterator[int]:
        """Every id not in a final state, in order, without listing them all at once."""
        return heapq.merge(*(self._ids_in(s) for s in (PENDING, LEASED)))

    def _ids_in(self, s: int) -> Iterator[int]:
        state = self.state
        i = state.find(s)
        while i >= 0:
            yield i
            i = state.find(s, i + 1)

    def held(self) -> Counter[int]:
        """Tasks each worker holds on a lease now, by worker index: O(tasks in flight)."""
        out: Counter[int] = Counter()
        leases, state = self.leases, self.state
        for tid, lid in self.holder.items():
            lease = leases.get(lid)
            if lease is not None and state[tid] == LEASED:
                out[lease.worker] += 1
        return out

    def nbytes(self) -> int:
        """About what this job holds in memory, for the broker's history budget."""
        per_task = len(self._packed) if self._packed is not None else 2 * self.total
        if isinstance(self.payloads, list):  # explicit payloads, until the job ends
            per_task += 8 * len(self.payloads) + sum(map(sys.getsizeof, self.payloads[:1000])) * (
                len(self.payloads) // 1000 + 1
            )
        in_flight = 100 * (len(self.holder) + len(self.errors) + len(self.front) + len(self.back))
        return 2048 + per_task + in_flight + 300 * sum(map(len, self.letters.values()))

    def _bytes(self) -> tuple[bytes | bytearray, bytes | bytearray]:
        if self._packed is None:
            return self.state, self.attempts
        raw = zlib.decompress(self._packed)
        return raw[: self.total], raw[self.total :]

    def mark_started(self) -> None:
        """The first task left the master: the job's clock starts here."""
        if self.started is None:
            self.started = self.clock()

    def _tally(self, worker: int) -> WorkerTally:
        t = self.tally.get(worker)
        if t is None:
            t = self.tally[worker] = WorkerTally()
        return t

    def pending_count(self) -> int:
        return len(self.front) + (self.total - self.fresh) + len(self.back)

    # -- leasing ---------------------------------------------------------------------------
    def _next_pending(self) -> int | None:
        state = self.state
        while self.front:
            tid = self.front.popleft()
            if state[tid] == PENDING:
                return tid
        while self.fresh < self.total:
            tid = self.fresh
            self.fresh += 1
            if state[tid] == PENDING:  # a result may have come before it was ever leased
                return tid
        while self.back:
            tid = self.back.popleft()
            if state[tid] == PENDING:  # accepted while waiting for a retry: dropped here
                return tid
        return None

    def lease(self, worker: int, want: int, active_workers: int = 1) -> Lease | None:
        """Hand out up to ``want`` pending tasks (at most a batch, and a fair share at the end)."""
        pending = self.pending_count()
        if want <= 0 or not pending or self.finished is not None:
            return None
        share = math.ceil(pending / max(1, active_workers))
        n = min(want, self.spec.batch, max(1, share))
        now = self.clock()
        lid = next(self._lease_ids)
        tids: list[int] = []
        state, attempts, holder = self.state, self.attempts, self.holder
        # the hot path: never-leased ids in a row, when nothing was released
        if not self.front and self.fresh < self.total:
            start = self.fresh
            stop = min(self.total, start + n)
            for tid in range(start, stop):
                if state[tid] == PENDING:
                    tids.append(tid)
            self.fresh = stop
        while len(tids) < n:
            tid = self._next_pending()
            if tid is None:
                break
            tids.append(tid)
        if not tids:
            return None
        for tid in tids:
            state[tid] = LEASED
            attempts[tid] += 1
            holder[tid] = lid
        lease = Lease(lid, worker, now + self.spec.lease_seconds, tids,
                      now + self.spec.task_timeout)  # fmt: skip
        self.mark_started()
        self.leases[lid] = lease
        return lease

    def take(self) -> int | None:
        """One task for a classic ``get`` (no lease: the classic protocol has no time-outs)."""
        if self.finished is not None:
            return None
        tid = self._next_pending()
        if tid is None:
            return None
        self.state[tid] = LEASED
        self.attempts[tid] += 1
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
        late = [lid for lid, lease in self.leases.items() if lease.deadline < now]
        n = 0
        for lid in late:
            lease = self._drop_lease(lid)
            self.counts["expired"] += 1
            for tid in lease.tids:
                if self.state[tid] == LEASED and self.holder.get(tid, lid) == lid:
                    self.holder.pop(tid, None)
                    n += 1
                    self._retry_or_bury(tid, EXPIRED, retry=True)
        return n

    def release(self, worker: int, tids: Iterable[int]) -> int:
        """Give back leased tasks a worker will not run (it is stopping): no attempt is spent."""
        n = 0
        for tid in tids:
            if 0 <= tid < self.total and self.state[tid] == LEASED:
                lease = self.leases.get(self.holder.get(tid, 0))
                if lease is None or lease.worker != worker:
                    continue
                self.state[tid] = PENDING
                self.attempts[tid] -= 1
                del self.holder[tid]
                self.front.appendleft(tid)
                n += 1
        for lid in [lid for lid, lease in self.leases.items() if lease.worker == worker]:
            if not any(self.holder.get(t) == lid for t in self.leases[lid].tids):
                self._drop_lease(lid)
        return n

    def _drop_lease(self, lid: int) -> Lease:
        lease = self.leases.pop(lid)
        holder = self.holder
        for tid in lease.tids:
            if holder.get(tid) == lid and self.state[tid] != LEASED:
                del holder[tid]
        return lease

    # -- results ---------------------------------------------------------------------------
    def check_results(self, oks: Sequence[tuple[int, Any]], errors: Sequence[tuple[int, str]],
                      lease_ids: Sequence[int] = ()) -> None:  # fmt: skip
        """Raise ValueError unless every id names a task of this job: checked before
        ``accept`` changes anything, so a malformed batch leaves the job as it was."""
        total = self.total
        for what, pairs in (("result", oks), ("error", errors)):
            for tid, _ in pairs:
                if not 0 <= tid < total:
                    raise ValueError(f"{what} for task {tid}: job {self.id} has ids 0..{total - 1}")

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
        expired may still finish first); any later one is counted as a duplicate. Ids must
        have passed ``check_results``.
        """
        tally = self._tally(worker)
        tally.busy += busy
        if self.finished is not None:  # every task is final: all of these are duplicates
            dups = sum(1 for _ in oks) + sum(1 for _ in errors)
            tally.duplicates += dups
            self.counts["duplicates"] += dups
            return 0, dups
        state, payloads, check, sink = self.state, self.payloads, self._check, self.sink
        stream = sink.mode == "stream"
        name = self.worker_name(worker) if stream else ""
        accepted = dups = 0
        attempts = self.attempts
        for tid, value in oks:
            if state[tid] >= OK:
                dups += 1
                continue
            if not attempts[tid]:  # never handed out: nobody was asked for this result
                self.counts["stale"] += 1
                continue
            state[tid] = OK
            if check is not None and not check(payloads[tid], value):
                self.counts["wrong"] += 1
                if len(self.wrong) < MAX_LISTED:
                    self.wrong.append(tid)
            if stream:
                sink.write(tid, "ok", value, name, peer, self.attempts[tid])
            accepted += 1
        failed = 0
        for tid, error in errors:
            if state[tid] >= OK:
                dups += 1
                continue
            lease = self.leases.get(self.holder.get(tid, 0)) if state[tid] == LEASED else None
            if lease is None or lease.worker != worker:
                # an error from a lease that already expired: that attempt is spent already
                self.counts["stale"] += 1
                continue
            failed += 1
            self.holder.pop(tid, None)
            self._retry_or_bury(tid, error, self.spec.retry_errors, worker, peer)
        tally.tasks += accepted
        tally.failed += failed
        tally.duplicates += dups
        if accepted:
            tally.peers[peer] += accepted
        self.counts["ok"] += accepted
        self.counts["duplicates"] += dups
        self.final += accepted
        for lid in set(lease_ids):  # repeats would rescan a lease each time
            lease = self.leases.get(lid)
            if lease is not None and all(
                state[t] != LEASED or self.holder.get(t) != lid for t in lease.tids
            ):
                self._drop_lease(lid)
        self._maybe_finish()
        return accepted, dups

    def lose(self, tid: int, reason: str, who: str, peer: str) -> bool:
        """A classic task whose taker's connection closed without a result: lost."""
        if self.finished is not None or self.state[tid] != LEASED:
            return False
        self._bury(tid, LOST, reason, who, peer)
        return True

    def _retry_or_bury(self, tid: int, error: str, retry: bool, worker: int = -1,
                       peer: str = "") -> None:  # fmt: skip
        if retry and self.attempts[tid] < self.spec.max_attempts:
            self.errors[tid] = error
            self.state[tid] = PENDING
            self.back.append(tid)
            self.counts["retries"] += 1
            return
        name = self.worker_name(worker) if worker >= 0 else ""
        self._bury(tid, DEAD if retry else FAILED, error, name, peer)

    def _bury(self, tid: int, final: int, error: str, name: str, peer: str) -> None:
        self.errors.pop(tid, None)
        self.state[tid] = final
        self._letter(final, tid, error, name, peer)
        self.sink.write(tid, STATE_NAMES[final], None, name, peer, self.attempts[tid], error)
        self.counts[STATE_NAMES[final]] += 1
        self.final += 1
        self._maybe_finish()

    def _letter(self, final: int, tid: int, error: str, name: str, peer: str) -> None:
        """Name a task that did not end ok, while fewer than ``MAX_LISTED`` are named."""
        letters = self.letters[final]
        if len(letters) < MAX_LISTED:
            letters.append({"id": tid, "attempts": self.attempts[tid], "error": error,
                            "worker": name or None, "peer": peer or None})  # fmt: skip

    def _maybe_finish(self) -> None:
        if self.finished is not None or self.final != self.total:
            return
        self.finished = self.clock()
        self._state_counts = [self.state.count(s) for s in range(len(STATE_NAMES))]
        packer = zlib.compressobj(1)  # piecewise: no 2-bytes-a-task copy at the peak
        self._packed = packer.compress(self.state) + packer.compress(self.attempts) + packer.flush()
        self.state = bytearray()
        self.attempts = bytearray()
        if not isinstance(self.payloads, kinds.Payloads):  # explicit: keep the named ones
            named = {x["id"] for letters in self.letters.values() for x in letters}
            self.payloads = _Named({t: self.payloads[t] for t in named}, self.total)
        self.leases.clear()
        self.holder.clear()
        self.errors.clear()
        self.front.clear()
        self.back.clear()
        self.sink.close()

    def stop(self, reason: str) -> None:
        """Bury every unfinished task as dead (a cancelled job): always ends the job, in
        time linear in bytes, not in Python work per task (a 10M-task cancel)."""
        if self.finished is not None:
            return
        for tid in self.unfinished(MAX_LISTED - len(self.letters[DEAD])):
            self._letter(DEAD, tid, self.errors.get(tid, reason), "", "")
        if self.sink.mode == "stream":
            for tid in self._unfinished_ids():
                self.sink.write(tid, "dead", None, "", "", self.attempts[tid],
                                self.errors.get(tid, reason))  # fmt: skip
        left = self.total - self.final
        self.state = bytearray(self.state.translate(_BURY))
        self.counts["dead"] += left
        self.final = self.total  # whatever the counts said: the recount judges them
        self._maybe_finish()
