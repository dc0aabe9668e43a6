"""Range leases: ranges split and merge under expiry, release, retries and duplicates, and
every id still ends in exactly one final state. Property-style: random event orders from
fixed seeds (stdlib ``random``; bounded: a few hundred orders of a few hundred steps),
checked against a model after every step."""

from __future__ import annotations

import pickle
import random
from typing import Any

import pytest
from distproc import kinds, wire
from distproc.ledger import DEAD, FAILED, LEASED, OK, PENDING, Ledger
from distproc.outbox import Outbox, picklable
from distproc.ranges import PendingQueue, RangeSet
from distproc.report import checks
from distproc.results import ResultSink
from distproc.runner import run_span
from distproc.spec import JobSpec

SEEDS = range(200)


# -- RangeSet against a set of ints -------------------------------------------------------
def _spans_of(ids: set[int]) -> list[tuple[int, int]]:
    """The canonical spans of a set: sorted, apart, touching ones merged."""
    out: list[tuple[int, int]] = []
    for t in sorted(ids):
        if out and out[-1][1] == t:
            out[-1] = (out[-1][0], t + 1)
        else:
            out.append((t, t + 1))
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_a_range_set_is_the_set_it_models_after_every_step(seed: int) -> None:
    rng = random.Random(seed)
    rs, model = RangeSet(), set()
    for _ in range(150):
        a = rng.randrange(60)
        b = a + rng.choice((0, 1, 1, 2, 3, 7, 20))
        op = rng.choice(("add", "add", "remove", "take", "overlap", "contains"))
        if op == "add":
            rs.add(a, b)
            model |= set(range(a, b))
        elif op == "remove":
            assert rs.remove(a, b) == len(model & set(range(a, b)))
            model -= set(range(a, b))
        elif op == "take":
            n = rng.randrange(6)
            taken = {t for s, e in rs.take(n) for t in range(s, e)}
            assert taken == set(sorted(model)[:n])
            model -= taken
        elif op == "overlap":
            assert rs.overlap(a, b) == _spans_of(model & set(range(a, b)))
        else:
            assert (a in rs) == (a in model)
        assert list(rs) == _spans_of(model) and len(rs) == len(model)


def test_a_queue_hands_out_released_then_fresh_then_retries() -> None:
    q = PendingQueue(10)
    assert q.take(3) == [(0, 3)]
    q.put_back(1, 2)
    q.put_front(0, 1)
    q.put_front(2, 3)
    assert q.take(4) == [(0, 1), (2, 5)]  # released first, then fresh from 3, merged
    q.discard(1, 2)  # finished while waiting for its retry
    assert q.take(20) == [(5, 10)] and len(q) == 0


# -- the ledger under random event orders --------------------------------------------------
class Recorder(ResultSink):
    """A streaming sink that fails the test if any id is written twice."""

    mode = "stream"

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[int, str] = {}

    def write(self, tid, state, value, worker, peer, attempts, error=""):  # type: ignore[override]
        assert tid not in self.rows, f"task {tid} ended twice: {self.rows[tid]}, then {state}"
        self.rows[tid] = state


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def check_invariants(job: Ledger) -> None:
    """A leased id is held by exactly one live lease; a pending id waits once; counts agree."""
    if job.finished is not None:
        return
    holders: dict[int, int] = {}
    for lease in job.leases.values():
        assert lease.held, f"lease {lease.id} is empty but still live"
        for a, b in lease.held:
            for t in range(a, b):
                assert t not in holders, f"task {t} held by leases {holders[t]} and {lease.id}"
                holders[t] = lease.id
    leased = {t for t, s in enumerate(job.state) if s == LEASED}
    assert leased == set(holders), f"leased {sorted(leased)} != held {sorted(holders)}"
    q = job.queue
    front, back = (
        {t for a, b in q.front for t in range(a, b)},
        {t for a, b in q.back for t in range(a, b)},
    )
    fresh = set(range(q.fresh, job.total))
    assert not (front & back or front & fresh or back & fresh), "an id waits twice"
    pending = {t for t, s in enumerate(job.state) if s == PENDING}
    assert pending == front | back | fresh
    assert all(a <= job.spec.max_attempts for a in job.attempts)
    finals = sum(job.state.count(s) for s in (OK, FAILED, DEAD))
    assert finals == job.final == job.counts["ok"] + job.counts["failed"] + job.counts["dead"]


def _answer(job: Ledger, lease_id: int, spans: list[tuple[int, int]], rng: random.Random,
            poison: set[int]) -> list[Any]:  # fmt: skip
    """A worker's results for ``spans``: right values, errors for poison ids."""
    ranges = wire.to_ranges(spans)
    ids = [t for a, b in spans for t in range(a, b)]
    values = [None if t in poison else t * t for t in ids]
    errors = [(t, "ValueError: poison") for t in ids if t in poison]
    return [(lease_id, ranges, values, errors)]


def _some(rng: random.Random, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """A random sub-run of each span (a worker acknowledges part of a range)."""
    out = []
    for a, b in spans:
        if rng.random() < 0.7:
            c = rng.randrange(a, b)
            out.append((c, rng.randrange(c, b) + 1))
    return out


def run_events(seed: int, steps: int = 120) -> Ledger:
    rng = random.Random(seed)
    clock = Clock()
    n = rng.randrange(1, 60)
    spec = JobSpec(tasks=n, batch=rng.randrange(1, 9), lease_seconds=5.0,
                   max_attempts=rng.randrange(1, 4), retry_errors=rng.random() < 0.7)  # fmt: skip
    job = Ledger("j", spec, kinds.Payloads("distproc_kinds.examples:collatz", n, 0, seed),
                 clock=clock, sink=Recorder())  # fmt: skip
    poison = set(rng.sample(range(n), k=min(n, rng.randrange(3))))
    sent: list[tuple[int, list[Any]]] = []  # every message sent so far (to send again)
    for _ in range(steps):
        if job.done:
            break
        worker = rng.randrange(3)
        event = rng.choice(("lease", "lease", "settle", "settle", "part", "release", "expire",
                            "again", "late", "renew"))  # fmt: skip
        live = [lease for lease in job.leases.values() if lease.worker == worker]
        if event == "lease":
            job.lease(worker, rng.randrange(1, 10), rng.randrange(1, 4))
        elif event in ("settle", "part") and live:
            lease = rng.choice(live)
            spans = list(lease.held) if event == "settle" else _some(rng, list(lease.held))
            done = _answer(job, lease.id, spans, rng, poison)
            wire.check_done(done, job.total, job.id)
            job.settle(worker, "p", done)
            sent.append((worker, done))
        elif event == "release" and live:
            job.release(worker, _some(rng, list(rng.choice(live).held)))
        elif event == "expire":
            for lease in rng.sample(list(job.leases.values()), k=min(2, len(job.leases))):
                lease.deadline = clock.now - 1  # this worker died or hung
            job.expire()
        elif event == "again" and sent:  # sent twice, late from an expired lease, or forged
            sender, done = rng.choice(sent)
            job.settle(rng.choice((sender, worker)), "p", done)
        elif event == "late":  # one result for any id, from anyone (the classic path)
            t = rng.randrange(n)
            job.accept(worker, "p", [] if t in poison else [(t, t * t)],
                       [(t, "late error")] if t in poison else [])  # fmt: skip
        elif event == "renew":
            job.renew(worker)
        check_invariants(job)
    for _ in range(50 * n + 50):  # the survivors finish the job
        if job.done:
            break
        lease = job.lease(0, 100, 1)
        if lease is None:
            for other in job.leases.values():
                other.deadline = clock.now - 1
            job.expire()
            continue
        job.settle(0, "p", _answer(job, lease.id, list(lease.held), rng, poison))
        check_invariants(job)
    return job


@pytest.mark.parametrize("seed", SEEDS)
def test_every_id_ends_in_exactly_one_final_state_whatever_the_order(seed: int) -> None:
    job = run_events(seed)
    assert job.done, job.progress()
    rows = job.sink.rows  # type: ignore[attr-defined]
    assert sorted(rows) == list(range(job.total))  # each written once (Recorder asserts)
    assert {c.name: c.status for c in checks(job)}["every_id_accounted"] == "pass"
    states = job.state_counts()
    assert states[OK] == sum(s == "ok" for s in rows.values()) == job.counts["ok"]
    assert states[DEAD] + states[FAILED] == sum(s != "ok" for s in rows.values())


def test_a_lease_splits_where_ids_fail_or_go_back_and_merges_again_in_the_queue() -> None:
    job = Ledger("j", JobSpec(tasks=20, batch=10, max_attempts=3),
                 kinds.Payloads("square", 20, 0, 1), clock=Clock())  # fmt: skip
    lease = job.lease(0, 10)
    assert lease is not None and list(lease.held) == [(0, 10)]
    assert job.release(0, [(3, 5)]) == 2  # a stopping worker gives back 3 and 4
    assert list(lease.held) == [(0, 3), (5, 10)] and list(job.queue.front) == [(3, 5)]
    values = [job.payloads[t] ** 2 if t != 6 else None for t in (0, 1, 2, 5, 6, 7)]
    done = [(lease.id, [(0, 3), (5, 3)], values, [(6, "boom")])]
    wire.check_done(done, job.total, job.id)
    assert job.settle(0, "p", done) == (5, 0)
    assert list(lease.held) == [(8, 10)] and list(job.queue.back) == [(6, 7)]
    job.leases[lease.id].deadline = -1.0
    assert job.expire() == 2  # 8 and 9 come back as retries (apart from 6: 7 is done)
    assert list(job.queue.back) == [(6, 7), (8, 10)]
    again = job.lease(1, 10)
    assert again is not None and again.spans == [(3, 5), (10, 18)]  # released, then fresh
    assert job.attempts[3] == 1 and job.attempts[8] == 1  # release spent nothing; expiry did


def test_a_late_range_from_an_expired_lease_wins_and_the_new_holder_is_a_duplicate() -> None:
    job = Ledger("j", JobSpec(tasks=8, batch=8), kinds.Payloads("square", 8, 0, 1), clock=Clock())
    first = job.lease(0, 8)
    assert first is not None
    first.deadline = -1.0
    job.expire()
    second = job.lease(1, 8)
    assert second is not None and second.spans == [(0, 8)]
    late = [(first.id, [(2, 4)], [job.payloads[t] ** 2 for t in range(2, 6)], [])]
    assert job.settle(0, "a", late) == (4, 0)  # the slow worker's results count
    assert list(second.held) == [(0, 2), (6, 8)]  # the new holder no longer holds 2-5
    full = [(second.id, [(0, 8)], [job.payloads[t] ** 2 for t in range(8)], [])]
    assert job.settle(1, "b", full) == (4, 4) and job.done


def test_wrong_values_in_a_range_are_found_one_by_one() -> None:
    job = Ledger("j", JobSpec(tasks=6, batch=6), kinds.Payloads("square", 6, 0, 3))
    lease = job.lease(0, 6)
    values: list[Any] = [job.payloads[t] ** 2 for t in range(6)]
    values[1], values[4] = True if values[1] == 1 else values[1] + 1, float(values[4])
    job.settle(0, "p", [(lease.id, [(0, 6)], values, [])])
    assert job.wrong == [1, 4] and job.counts["wrong"] == 2 and job.done


# -- the worker's side ------------------------------------------------------------------------
def test_payload_spans_are_the_payloads_one_by_one() -> None:
    for kind, size in (("square", 0), ("cpu", 7), ("mod:fn", 0)):
        p = kinds.Payloads(kind, 1000, size, 42)
        assert p.span(0, 1000) == [p[i] for i in range(1000)]
        assert p.span(990, 995) == [p[i] for i in range(990, 995)]
    src = wire.source(p, [(3, 5), (8, 9)])
    assert wire.payloads_of("mod:fn", [(3, 2), (8, 1)], src) == [3, 4, 8]
    explicit = list("abcdefghij")
    src = wire.source(explicit, [(3, 5), (8, 9)])
    assert src == ("payloads", ["d", "e", "i"])


def test_list_extend_keeps_what_a_map_made_before_it_raised() -> None:
    """``run_span`` relies on it (CPython's list.extend appends as it iterates)."""
    values: list[Any] = []
    with pytest.raises(ZeroDivisionError):
        values.extend(map(lambda x: 1 // x, [1, 2, 0, 4]))
    assert values == [1, 0]


def test_run_span_lists_errors_apart_and_runs_every_task_once() -> None:
    runs: list[int] = []

    def fn(x: int) -> int:
        runs.append(x)
        if x % 5 == 3:
            raise ValueError(x)
        if x == 7:
            raise StopIteration  # ends a map as if it had run out: not here
        return -x

    values: list[Any] = []
    errors: list[tuple[int, str]] = []
    run_span(fn, list(range(10)), 100, values, errors)
    assert runs == list(range(10))
    assert values == [0, -1, -2, None, -4, -5, -6, None, None, -9]
    assert errors == [(103, "ValueError: 3"), (107, "StopIteration"), (108, "ValueError: 8")]


def test_the_outbox_merges_pool_results_into_ranges_per_lease() -> None:
    box = Outbox()
    for tid in (5, 3, 4, 9, 8):
        box.add_one("j", 1, tid, tid * 10)
    box.add_one("j", 1, 6, error="boom")
    box.add_one("j", 2, 0, 0)
    box.add_one("j", 1, 4, 40)  # a task run twice: its own entry, a duplicate for the master
    assert len(box) == 8 and box.jobs() == ["j"]
    done, _ = box.take("j")
    assert done == [
        (1, [(3, 4), (8, 2)], [30, 40, 50, None, 80, 90], [(6, "boom")]),
        (1, [(4, 1)], [40], []),
        (2, [(0, 1)], [0], []),
    ]
    for entry in done:
        wire.check_done([entry], 10, "j")
    box.put_back("j", done, 0.5)
    assert box.take("j")[0] == done
    box.put_back("j", done, 0.0)
    assert box.undeliverable("refused") == 7
    entries, _ = box.take("j")
    assert all(v is None for e in entries for v in e[2]) and entries[0][3][0] == (3, "refused")


def test_a_value_that_does_not_pickle_becomes_that_ids_error() -> None:
    done = [(1, [(0, 3)], [0, lambda: 1, 4], [])]
    [(_, _, values, errors)] = picklable(done)
    assert values == [0, None, 4] and errors[0][0] == 1 and "cannot be pickled" in errors[0][1]
    pickle.dumps(values)
