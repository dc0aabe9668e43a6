"""Jobs back from a journal (``journal.py``): a ledger per job, as the master left it.

What was final stays final, with its attempts, its error and who sent it, and its value where
the job keeps values (the results file of a running job is written again from the journal).
A retry waiting stays a retry, with its last error. Every other id of a running job, leased
or waiting when the master died, waits in the queue again with the attempts it had spent
before: a lease lost with the master costs no attempt (a crash of the master is not the
task's fault), and a result that a worker still sends for it is accepted, not stale
(``Ledger.from_before``).

The classic protocol has no leases. A classic task taken and not answered when the master
died is counted lost, with who took it: its connection closed with the master, and the
classic protocol is at-most-once (the tutorial's rule, applied to the crash). Tasks not
taken yet are served again.

A journal that does not add up (a row outside its job, an id made final twice, counters that
disagree with the rows) is refused (``JournalError``), never half-believed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from . import kinds
from .journal import JobRecord, JournalError
from .ledger import Ledger
from .registry import WorkerRegistry
from .results import ResultSink, StreamSink, sink_for
from .spec import make_spec
from .states import (
    BYTE,
    EXPIRED,
    FINAL,
    LEASED,
    LOST,
    MAX_LISTED,
    OK,
    PENDING,
    STATE_NAMES,
    Row,
    WorkerTally,
)  # fmt: skip

_FINAL_COUNTS = tuple(STATE_NAMES[s] for s in FINAL)


def restore(rec: JobRecord, registry: WorkerRegistry, results_dir: str | None,
            clock: Callable[[], float] = time.monotonic) -> Ledger:  # fmt: skip
    """The ledger of one journaled job (its ``log`` set, if it still runs: what the replay
    itself decided, classic losses, is for the journal to keep)."""
    try:
        spec = make_spec(rec.spec)
        if rec.ended is not None:
            return _ended(rec, spec, registry, clock)
        return _running(rec, spec, registry, results_dir, clock)
    except JournalError:
        raise
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise JournalError(f"job {rec.id} in the journal does not add up: {exc}") from None


def _payloads(rec: JobRecord, spec: Any) -> Any:
    if rec.payloads is None:
        return kinds.make_payloads(spec.kind, spec.tasks, spec.size, spec.seed)
    if rec.ended is not None:
        return kinds.Named(dict(rec.payloads), spec.tasks)
    if not isinstance(rec.payloads, list) or len(rec.payloads) != spec.tasks:
        raise ValueError(f"its payloads are not a list of {spec.tasks}")
    return rec.payloads


def _ended(rec: JobRecord, spec: Any, registry: WorkerRegistry,
           clock: Callable[[], float]) -> Ledger:  # fmt: skip
    ended = rec.ended
    assert ended is not None and rec.packed is not None
    sink_seen = ended["sink"]
    sink = (StreamSink.reopen(sink_seen["path"], int(sink_seen["written"]))
            if sink_seen["mode"] == "stream" else ResultSink())  # fmt: skip
    job = Ledger(rec.id, spec, _payloads(rec, spec), clock, sink, registry.name)
    job.restore_end(ended, rec.packed)
    _tallies(job, ended["tallies"], registry)
    return job


def _running(rec: JobRecord, spec: Any, registry: WorkerRegistry, results_dir: str | None,
             clock: Callable[[], float]) -> Ledger:  # fmt: skip
    sink = sink_for(spec.results, results_dir, rec.id)  # written again from the journal
    job = Ledger(rec.id, spec, _payloads(rec, spec), clock, sink, registry.name)
    taken: dict[int, tuple[str, str]] = {}
    kept: dict[str, Any] = {"counts": {}, "wrong": [], "started": None}
    tallies: dict[str, list[Any]] = {}  # wid -> [identity, tally]
    for change in rec.changes():
        if isinstance(change, dict):  # a progress record: the last one is the job's now
            kept = change
            for wid, (identity, tally) in change["tallies"].items():
                tallies[wid] = [identity or tallies.get(wid, [{}])[0], tally]
        else:
            _apply(job, change, taken)
    for name, n in kept["counts"].items():
        if name in _FINAL_COUNTS:
            if int(n) != job.counts[name]:
                raise ValueError(f"its counters say {n} {name}, its rows {job.counts[name]}")
        elif n:
            job.counts[name] = int(n)
    job.wrong = [int(t) for t in kept["wrong"]]
    _tallies(job, [[wid, identity, tally] for wid, (identity, tally) in tallies.items()],
             registry)  # fmt: skip
    wall, now = time.time(), clock()
    job.submitted = now - max(0.0, wall - rec.submitted)
    if kept["started"] is not None:
        job.started_at = float(kept["started"])
        job.started = now - max(0.0, wall - job.started_at)
    job.log = []
    _lose_taken(job, taken)
    job.resume()
    job._maybe_finish()  # every id was final already: the job ends with the replay
    job.sink.flush()  # the results file is whole again before the first new result
    return job


def _apply(job: Ledger, row: Row, taken: dict[int, tuple[str, str]]) -> None:
    """One journal row onto the per-task bytes, checked against the job."""
    first, count, state, attempts, error, worker, peer, values = row
    a, b = first, first + count
    if not (a >= 0 and count >= 1 and b <= job.total and 0 <= state < len(STATE_NAMES)):
        raise JournalError(f"job {job.id}: a row ({first}, {count}, state {state}) outside "
                           f"its {job.total} tasks")  # fmt: skip
    if len(attempts) not in (1, count):
        raise JournalError(f"job {job.id}: the attempts of ids {a}..{b - 1} do not fit")
    for s in FINAL:
        if job.state.find(BYTE[s], a, b) >= 0:
            raise JournalError(f"job {job.id}: ids in {a}..{b - 1} made final twice")
    job.state[a:b] = BYTE[state] * count
    job.attempts[a:b] = attempts * count if len(attempts) == 1 else attempts
    if state in FINAL:
        job._forget_errors(a, b)
        job.expired.remove(a, b)
        job.final += count
        job.counts[STATE_NAMES[state]] += count
        if taken and count == 1:
            taken.pop(a, None)
        if state != OK:
            for tid in range(a, min(b, a + MAX_LISTED)):
                job._letter(state, tid, error or "", worker, peer)
        _stream(job, a, b, state, values, error or "", worker, peer)
    elif state == PENDING:  # a retry waits: after an error (one id) or an expired lease
        job._forget_errors(a, b)
        if count == 1 and error != EXPIRED:
            job.errors[a] = error or ""
            job.expired.remove(a, b)
        else:
            job.expired.add(a, b)
    else:  # LEASED: taken by a classic worker
        taken[a] = (worker, peer)


def _stream(job: Ledger, a: int, b: int, state: int, values: list[Any] | None, error: str,
            worker: str, peer: str) -> None:  # fmt: skip
    """Write a replayed row to the results file of a job that keeps values."""
    if job.sink.mode != "stream":
        return
    if state == OK:
        if values is None or len(values) != b - a:
            raise JournalError(f"job {job.id}: the values of ids {a}..{b - 1} are missing")
        for tid, value in zip(range(a, b), values, strict=True):
            job.sink.write(tid, "ok", value, worker, peer, job.attempts[tid])
        return
    for tid in range(a, b):
        job.sink.write(tid, STATE_NAMES[state], None, worker, peer, job.attempts[tid], error)


def _lose_taken(job: Ledger, taken: dict[int, tuple[str, str]]) -> None:
    """Classic tasks taken and not answered when the master died: lost (at-most-once)."""
    for tid, (who, peer) in sorted(taken.items()):
        if job.state[tid] == LEASED:
            reason = (f"lost: {who or 'a classic worker'} took it and the master restarted "
                      "before its result came")  # fmt: skip
            job._bury(tid, tid + 1, LOST, reason, who, peer)
    if job.state.find(BYTE[LEASED]) >= 0:
        raise JournalError(f"job {job.id}: a task is taken with no one named to hold it")


def _tallies(job: Ledger, tallies: list[Any], registry: WorkerRegistry) -> None:
    for wid, identity, kept in tallies:
        tally = WorkerTally.from_list(kept)
        job.tally[registry.remember(wid, identity, list(tally.peers))] = tally
