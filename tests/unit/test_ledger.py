"""The ledger's rules, on a fake clock: leases, retries, dead letters, exactly-once accounting."""

from __future__ import annotations

from typing import Any

import pytest
from distproc.ledger import DEAD, FAILED, LEASED, LOST, OK, PENDING, Ledger
from distproc.results import ResultSink
from distproc.spec import JobSpec, make_spec
from distproc.wire import check_done


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Recorder(ResultSink):
    """Keeps what a streaming sink would write, in memory, for the test to read."""

    mode = "stream"

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[int, dict[str, Any]] = {}

    def write(self, tid, state, value, worker, peer, attempts, error=""):  # type: ignore[override]
        assert tid not in self.rows, f"task {tid} written twice"
        self.rows[tid] = {"state": state, "value": value, "worker": worker, "peer": peer,
                          "attempts": attempts, "error": error}  # fmt: skip


def ledger(n: int = 10, **spec) -> tuple[Ledger, Clock]:
    clock = Clock()
    fields = {"tasks": n, "batch": 4, "lease_seconds": 5.0, "max_attempts": 3, **spec}
    sink = Recorder()
    return Ledger("j", JobSpec(**fields), list(range(n)), clock=clock, sink=sink), clock


def test_lease_hands_out_at_most_a_batch_and_a_fair_share() -> None:
    job, _ = ledger(10)
    a = job.lease(worker=0, want=100, active_workers=1)
    assert a is not None and a.spans == [(0, 4)]  # capped by the job's batch
    b = job.lease(worker=1, want=100, active_workers=3)
    assert b is not None and b.spans == [(4, 6)]  # 6 left, 3 workers: a fair share of 2
    assert job.state[:6] == bytes([LEASED]) * 6 and job.state[6:] == bytes(4)
    assert job.lease(worker=0, want=0) is None


def test_first_result_wins_and_duplicates_are_counted_not_reported() -> None:
    job, _ = ledger(4)
    lease = job.lease(0, 4)
    assert job.accept(0, "10.0.0.1", [(0, 0), (1, 1)]) == (2, 0)
    assert job.accept(1, "10.0.0.2", [(1, 999), (2, 4)]) == (1, 1)
    assert job.sink.rows[1]["value"] == 1 and job.sink.rows[1]["peer"] == "10.0.0.1"
    assert job.counts["duplicates"] == 1 and job.counts["ok"] == 3
    assert lease.id in job.leases  # task 3 is still out
    job.accept(0, "10.0.0.1", [(3, 9)])
    assert job.done and job.final == 4 and lease.id not in job.leases


def test_expired_lease_goes_back_and_dies_after_max_attempts() -> None:
    job, clock = ledger(1, max_attempts=2)
    for attempt in (1, 2):
        lease = job.lease(0, 1)
        assert lease is not None and job.attempts[0] == attempt
        clock.now += 6  # past the deadline: the worker died or hung
        assert job.expire() == 1
    assert job.state_of(0) == DEAD and job.done
    assert "lease expired" in job.letters[DEAD][0]["error"]
    assert job.counts["expired"] == 2 and job.counts["retries"] == 1


def test_renew_keeps_a_lease_alive() -> None:
    job, clock = ledger(2)
    job.lease(0, 2)
    for _ in range(3):
        clock.now += 4
        assert job.renew(0) == 1
        assert job.expire() == 0
    assert list(job.state[:2]) == [LEASED, LEASED]


def test_late_result_from_expired_lease_is_accepted_then_rerun_is_duplicate() -> None:
    job, clock = ledger(1)
    job.lease(0, 1)
    clock.now += 6
    job.expire()
    assert job.state[0] == PENDING
    job.lease(1, 1)  # re-leased to worker 1
    assert job.accept(0, "a", [(0, 0)]) == (1, 0)  # the slow worker finishes first: accepted
    assert job.accept(1, "b", [(0, 0)]) == (0, 1)  # the re-run is a duplicate
    assert job.state_of(0) == OK and job.sink.rows[0]["worker"] == "0"


def test_errors_retry_then_dead_letter_with_the_error() -> None:
    job, _ = ledger(1, max_attempts=3)
    for _ in range(3):
        job.lease(0, 1)
        job.accept(0, "a", [], [(0, "ValueError: poison")])
    assert job.state_of(0) == DEAD and job.letters[DEAD][0]["error"] == "ValueError: poison"
    assert job.attempts_of(0) == 3 and job.counts["dead"] == 1


def test_errors_are_final_when_not_retried() -> None:
    job, _ = ledger(1, retry_errors=False)
    job.lease(0, 1)
    job.accept(0, "a", [], [(0, "boom")])
    assert job.state_of(0) == FAILED and job.counts["failed"] == 1 and job.done


def test_stale_error_from_an_expired_lease_spends_nothing() -> None:
    job, clock = ledger(1)
    job.lease(0, 1)
    clock.now += 6
    job.expire()
    job.lease(1, 1)
    job.accept(0, "a", [], [(0, "late error")])  # worker 0's lease is gone
    assert job.state[0] == LEASED and job.attempts[0] == 2 and job.counts["stale"] == 1


def test_release_gives_tasks_back_without_spending_attempts() -> None:
    job, _ = ledger(4)
    lease = job.lease(0, 4)
    assert job.release(1, lease.spans) == 0  # not worker 1's to release
    assert job.release(0, [(2, 4)]) == 2
    assert list(job.state[2:]) == [PENDING, PENDING] and list(job.attempts[2:]) == [0, 0]
    assert lease.held.pieces == 1 and len(lease.held) == 2  # the lease split: 0-1 still out
    again = job.lease(1, 4)
    assert again is not None and again.spans == [(2, 4)]


def test_unknown_ids_are_refused_before_anything_changes() -> None:
    job, _ = ledger(2)
    lease = job.lease(0, 2)
    before = (bytes(job.state), dict(job.counts), job.final)
    good = (lease.id, [(0, 2)], [0, 1], [])
    for bad, fragment in [
        ((lease.id, [(0, 2), (7, 1)], [0, 1, 49], []), r"ids 0\.\.1"),
        ((lease.id, [(0, 2)], [0, 1], [(-1, "x")]), "task -1"),
        ((lease.id, [(0, 2)], [0], []), "1 values for 2 ids"),
        ((lease.id, [(1, 1), (0, 1)], [1, 0], []), "in order"),
        ((lease.id, [(0, 1)], [None], [(1, "x")]), "inside the ranges"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            check_done([good, bad], job.total, job.id)
    check_done([good], job.total, job.id)
    assert (bytes(job.state), dict(job.counts), job.final) == before


def test_classic_take_and_lose() -> None:
    job, _ = ledger(2, protocol="classic")
    a, b = job.take(), job.take()
    assert (a, b) == (0, 1) and job.take() is None
    assert job.lose(a, "lost: gone", "classic@x", "x")
    assert not job.lose(a, "twice", "classic@x", "x")  # already final
    job.accept(0, "y", [(b, 1)])
    assert job.done and job.counts["lost"] == 1 and job.letters[LOST][0]["worker"] == "classic@x"


def test_cancel_of_millions_is_fast_and_keeps_a_state_per_task() -> None:
    n = 2_000_000
    job = Ledger("big", JobSpec(tasks=n, batch=1000), range(n))
    lease = job.lease(0, 1000)
    job.settle(0, "p", [(lease.id, [(0, 1000)], [t * t for t in range(1000)], [])])
    job.stop("cancelled")
    assert job.done and job.counts["dead"] == n - 1000 and job.counts["ok"] == 1000
    assert job.state_counts()[DEAD] == n - 1000 and len(job.letters[DEAD]) == 20
    assert job.nbytes() < 100_000  # packed once finished: no longer 2 bytes a task


def test_finished_job_counts_late_results_as_duplicates() -> None:
    job, _ = ledger(1)
    job.lease(0, 1)
    job.accept(0, "a", [(0, 0)])
    assert job.done and job.accept(1, "b", [(0, 0)], [(0, "late")]) == (0, 2)
    assert job.counts["duplicates"] == 2 and job.counts["ok"] == 1


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"kind": "nope"}, "must be one of square, cpu, io"),
        ({"kind": "mod:Foo.bar"}, "must be one of"),
        ({"kind": "class:run"}, "must be one of"),
        ({"protocol": "udp"}, "unknown protocol"),
        ({"protocol": "classic", "kind": "cpu"}, "only supports kind 'square'"),
        ({"tasks": -1}, "tasks must be"),
        ({"batch": 0}, "batch must be"),
        ({"lease_seconds": 0}, "lease_seconds"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_specs_are_refused(fields: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        make_spec(fields)


def test_unfinished_lists_the_first_ids_whatever_their_state() -> None:
    job, _ = ledger(30, batch=4)
    job.lease(0, 4)  # 0-3 leased, 4-29 pending
    job.release(0, [(2, 3)])  # 2 pending again
    assert job.unfinished(5) == [0, 1, 2, 3, 4]
