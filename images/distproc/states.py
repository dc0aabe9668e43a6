"""A job's tasks and their final states: two bytes a task, each final state counted once.

The ledger (``ledger.py``) builds on this: it hands tasks out and takes results in; this is
what it records them in. Memory is bounded by what is in flight, not by what is done. Per
task there are two bytes (``state`` and ``attempts``, bytearrays: 20 MB for 10,000,000
tasks, where lists cost 8 bytes a slot plus an int object each); values are checked on
arrival, counted, and handed to a ``ResultSink`` that drops or streams them. Last errors are
kept only for tasks not yet final; dead letters only for the first ``MAX_LISTED``. When a job
ends its per-task bytes are compressed (``zlib``: a 10M-task job of one state packs to some
20 KB), which is what keeps the job history small.

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
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import kinds
from .ranges import RangeSet
from .results import ResultSink
from .spec import JobSpec

PENDING, LEASED, OK, FAILED, DEAD, LOST = range(6)
STATE_NAMES = ("pending", "leased", "ok", "failed", "dead", "lost")
FINAL = (OK, FAILED, DEAD, LOST)
MAX_LISTED = 20  # dead letters, failures, losses and wrong values named in a report

EXPIRED = "lease expired: the worker died, hung or was cut off, or the task ran past task_timeout"
LEASED_GUARANTEE = "at-least-once execution, exactly-once accounting"
CLASSIC_GUARANTEE = "at-most-once: a task held by a worker that dies is lost (the tutorial's rule)"
_BURY = bytes(DEAD if s in (PENDING, LEASED) else s for s in range(256))  # for stop()
BYTE = [bytes([s]) for s in range(len(STATE_NAMES))]  # BYTE[s] * n: n tasks in state s

#: One change a journal keeps (``journal.py``): ids ``[first, first + count)`` went to
#: ``state`` with these ``attempts`` (one byte each, or one byte for all), the error, who
#: sent it from where, and the values (ok rows of a job that keeps them, else None).
Row = tuple[int, int, int, bytes, str | None, str, str, list[Any] | None]


@dataclass
class WorkerTally:
    """One worker's share of one job."""

    tasks: int = 0
    busy: float = 0.0
    failed: int = 0
    duplicates: int = 0
    peers: Counter[str] = field(default_factory=Counter)

    def as_list(self) -> list[Any]:
        """As a journal keeps it: ``[tasks, failed, duplicates, busy, {peer: tasks}]``."""
        return [self.tasks, self.failed, self.duplicates, self.busy, dict(self.peers)]

    @classmethod
    def from_list(cls, kept: list[Any]) -> WorkerTally:
        tasks, failed, duplicates, busy, peers = kept
        return cls(int(tasks), float(busy), int(failed), int(duplicates), Counter(peers))


class From(NamedTuple):
    """Who sent the results being recorded."""

    worker: int
    tally: WorkerTally
    peer: str
    name: str


class TaskStates:
    """The per-task bytes of one job, its counts, its dead letters and its clock."""

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
        self.errors: dict[int, str] = {}  # last error of a task waiting for its retry
        self.expired = RangeSet()  # ids whose last attempt ended with an expired lease
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
        self.started_at: float | None = None if n else time.time()  # the same, wall clock
        self.finished: float | None = None
        #: the changes a journal has yet to take (``Row``); None: no journal, nothing kept
        self.log: list[Row] | None = None

    def _pieces_in_flight(self) -> int:
        """Ranges the ledger holds for tasks not yet final (for ``nbytes``)."""
        return 0

    def _end_in_flight(self) -> None:
        """The job ended: the ledger drops what it held for tasks in flight."""

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

    def nbytes(self) -> int:
        """About what this job holds in memory, for the broker's history budget."""
        per_task = len(self._packed) if self._packed is not None else 2 * self.total
        if isinstance(self.payloads, list):  # explicit payloads, until the job ends
            per_task += 8 * len(self.payloads) + sum(map(sys.getsizeof, self.payloads[:1000])) * (
                len(self.payloads) // 1000 + 1
            )
        in_flight = 100 * (len(self.errors) + self.expired.pieces + self._pieces_in_flight())
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
            self.started_at = time.time()

    def _from(self, worker: int, peer: str) -> From:
        tally = self.tally.get(worker)
        if tally is None:
            tally = self.tally[worker] = WorkerTally()
        name = self.worker_name(worker) if worker >= 0 else ""
        return From(worker, tally, peer, name)

    def _payload_span(self, start: int, stop: int) -> list[Any]:
        p = self.payloads
        return p.span(start, stop) if isinstance(p, kinds.Payloads) else list(p[start:stop])

    # -- recording ----------------------------------------------------------------------
    def _record(self, src: From, p: int, q: int, values: list[Any]) -> None:
        n = q - p
        self.counts["ok"] += n
        self.final += n
        src.tally.tasks += n
        src.tally.peers[src.peer] += n
        keep = self.sink.mode == "stream"
        if self.log is not None:
            self.log.append((p, n, OK, self._attempts_of(p, q), None, src.name, src.peer,
                             values if keep else None))  # fmt: skip
        if keep:
            for tid, value in zip(range(p, q), values, strict=True):
                self.sink.write(tid, "ok", value, src.name, src.peer, self.attempts[tid])

    def _attempts_of(self, p: int, q: int) -> bytes:
        """The attempts of ids ``[p, q)`` as a journal row keeps them: one byte when they
        are all the same (a lease's ids nearly always are), else one byte each."""
        a = self.attempts[p:q]
        return bytes(a[:1]) if a and a.count(a[0]) == len(a) else bytes(a)

    def _log(self, p: int, q: int, state: int, error: str | None, name: str = "",
             peer: str = "") -> None:  # fmt: skip
        """Keep a change that is not an ok result for the journal, if there is one."""
        if self.log is not None:
            self.log.append((p, q - p, state, self._attempts_of(p, q), error, name, peer, None))

    def _dup(self, src: From, n: int) -> None:
        src.tally.duplicates += n
        self.counts["duplicates"] += n

    def _wrong(self, tids: list[int]) -> None:
        self.counts["wrong"] += len(tids)
        self.wrong += tids[: max(0, MAX_LISTED - len(self.wrong))]

    def lose(self, tid: int, reason: str, who: str, peer: str) -> bool:
        """A classic task whose taker's connection closed without a result: lost."""
        if self.finished is not None or self.state[tid] != LEASED:
            return False
        self._bury(tid, tid + 1, LOST, reason, who, peer)
        self._maybe_finish()
        return True

    def _bury(self, p: int, q: int, final: int, error: str, name: str, peer: str) -> None:
        """Ids ``[p, q)`` end ``final`` with ``error``: counted, the first ones named."""
        self._forget_errors(p, q)
        self.expired.remove(p, q)
        self.state[p:q] = BYTE[final] * (q - p)
        self._log(p, q, final, error, name, peer)
        for tid in range(p, min(q, p + MAX_LISTED)):
            self._letter(final, tid, error, name, peer)
        if self.sink.mode == "stream":
            for tid in range(p, q):
                self.sink.write(tid, STATE_NAMES[final], None, name, peer, self.attempts[tid],
                                error)  # fmt: skip
        self.counts[STATE_NAMES[final]] += q - p
        self.final += q - p

    def _forget_errors(self, p: int, q: int) -> None:
        if q - p == 1:
            self.errors.pop(p, None)
        elif self.errors:
            for tid in [t for t in self.errors if p <= t < q]:
                del self.errors[tid]

    def _letter(self, final: int, tid: int, error: str, name: str, peer: str) -> None:
        """Name a task that did not end ok, while fewer than ``MAX_LISTED`` are named."""
        letters = self.letters[final]
        if len(letters) < MAX_LISTED:
            letters.append({"id": tid, "attempts": self.attempts[tid], "error": error,
                            "worker": name or None, "peer": peer or None})  # fmt: skip

    def _last_error(self, tid: int, default: str) -> str:
        return self.errors.get(tid) or (EXPIRED if tid in self.expired else default)

    def _maybe_finish(self) -> None:
        if self.finished is not None or self.final != self.total:
            return
        self.finished = self.clock()
        ok = self.state.count(OK)  # one pass when every task ended ok: 10 ms for 10M tasks
        self._state_counts = ([0, 0, ok, 0, 0, 0] if ok == self.total else
                              [self.state.count(s) for s in range(len(STATE_NAMES))])  # fmt: skip
        packer = zlib.compressobj(1)  # piecewise: no 2-bytes-a-task copy at the peak
        self._packed = packer.compress(self.state) + packer.compress(self.attempts) + packer.flush()
        self.state = bytearray()
        self.attempts = bytearray()
        if not isinstance(self.payloads, kinds.Payloads):  # explicit: keep the named ones
            named = {x["id"] for letters in self.letters.values() for x in letters}
            self.payloads = kinds.Named({t: self.payloads[t] for t in named}, self.total)
        self._end_in_flight()
        self.errors.clear()
        self.expired = RangeSet()
        self.sink.close()

    # -- a journal's view (journal.py, replay.py) -----------------------------------------
    def end_record(self, who: Callable[[int], tuple[str, dict[str, Any]]]
                   ) -> tuple[dict[str, Any], bytes, dict[int, Any] | None]:  # fmt: skip
        """What a journal keeps of a finished job: what its report lists (JSON-ready), its
        packed per-task bytes, and its named explicit payloads. ``who(index)`` is a worker's
        id and identity."""
        assert self.finished is not None and self._packed is not None
        started = self.started if self.started is not None else self.finished
        ended = {
            "counts": dict(self.counts),
            "state_counts": list(self.state_counts()),
            "letters": {STATE_NAMES[s]: list(self.letters[s]) for s in self.letters},
            "wrong": list(self.wrong),
            "tallies": [[*who(index), tally.as_list()] for index, tally in self.tally.items()],
            "sink": self.sink.describe(),
            "waited": started - self.submitted,
            "elapsed": self.finished - started,
            "started_at": self.started_at,
            "finished_at": time.time(),
        }
        named = self.payloads.kept() if isinstance(self.payloads, kinds.Named) else None
        return ended, self._packed, named

    def restore_end(self, ended: dict[str, Any], packed: bytes) -> None:
        """The inverse of ``end_record`` (without the tallies: ``replay.py`` maps workers):
        this job as it was when it ended. Raises ValueError if the parts do not fit."""
        if len(zlib.decompress(packed)) != 2 * self.total:
            raise ValueError(f"its packed states do not hold {self.total} tasks")
        counts = ended["state_counts"]
        if len(counts) != len(STATE_NAMES) or sum(counts) != self.total:
            raise ValueError(f"its state counts {counts} do not add up to {self.total} tasks")
        self._packed, self._state_counts = packed, [int(n) for n in counts]
        self.state, self.attempts = bytearray(), bytearray()
        self.counts = Counter(ended["counts"])
        self.letters = {s: list(ended["letters"].get(STATE_NAMES[s], [])) for s in self.letters}
        self.wrong = list(ended["wrong"])
        self.final = self.total
        self.finished = self.clock()
        self.started = self.finished - float(ended["elapsed"])
        self.submitted = self.started - float(ended["waited"])
        self.started_at = ended.get("started_at")
        self._end_in_flight()
        self.errors.clear()
        self.expired = RangeSet()

    def stop(self, reason: str) -> None:
        """Bury every unfinished task as dead (a cancelled job): always ends the job, in
        time linear in bytes, not in Python work per task (a 10M-task cancel)."""
        if self.finished is not None:
            return
        for tid in self.unfinished(MAX_LISTED - len(self.letters[DEAD])):
            self._letter(DEAD, tid, self._last_error(tid, reason), "", "")
        if self.sink.mode == "stream":
            for tid in self._unfinished_ids():
                self.sink.write(tid, "dead", None, "", "", self.attempts[tid],
                                self._last_error(tid, reason))  # fmt: skip
        left = self.total - self.final
        self.state = bytearray(self.state.translate(_BURY))
        self.counts["dead"] += left
        self.final = self.total  # whatever the counts said: the recount judges them
        self._maybe_finish()
