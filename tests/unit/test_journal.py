"""The journal and its replay, on the broker itself (in this process: the calls a proxy makes).

A "crash" here closes the journal's connection as it stands: every broker call commits
before it returns, so what a call accepted is on disk, and nothing written after it. The
same, with the master process killed by SIGKILL at random points, is test_journal_restart.py.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from distproc import wire
from distproc.broker import Broker, JobError, UnknownJob
from distproc.journal import LAG_CHANGES, LAG_ROWS, Journal, JournalError, open_journal
from distproc.journal_file import APPLICATION_ID, SCHEMA
from distproc.ledger import DEAD, LOST, OK, PENDING
from distproc.states import EXPIRED


def _db(path: Path) -> Any:
    """A connection of our own to a journal, closed after use (an open one holds a lock)."""
    return contextlib.closing(sqlite3.connect(path, isolation_level=None))


def _answer(reply: tuple, error_at: int | None = None, value: Any = None) -> list[tuple]:
    """The results of a lease as a worker sends them (right squares, or ``value(p)``);
    ``error_at``: that id raised."""
    _job, lid, _, kind, ranges, source = reply
    payloads = wire.payloads_of(kind, ranges, source)
    values = [value(p) if value else p * p for p in payloads]
    errors = []
    if error_at is not None:
        ids = [t for first, count in ranges for t in range(first, first + count)]
        values[ids.index(error_at)] = None
        errors = [(error_at, "ValueError: once")]
    return [(lid, ranges, values, errors)]


def _first_id(reply: tuple) -> int:
    return reply[4][0][0]


def _broker(path: Path, **kwargs: Any) -> Broker:
    return Broker(journal=open_journal(str(path)), **kwargs)


def _crash(b: Broker) -> None:
    """The master dies just after its journal's last commit: what it accepted is on disk
    (``test_what_was_accepted_and_not_committed_runs_again`` has it die before)."""
    assert b.journal is not None
    b.journal.flush()
    b.journal._conn.close()


def _drain(b: Broker, wid: str = "w") -> None:
    b.hello(wid, {"name": wid})
    reply = b.exchange(wid, None, [], 0.0, 1000, 0.0)
    while reply is not None:
        reply = b.exchange(wid, reply[0], _answer(reply), 0.0, 1000, 0.0)


def test_replay_keeps_what_was_final_and_queues_again_what_was_leased(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    b = _broker(journal)
    job_id = b.submit({"kind": "square", "tasks": 1000, "batch": 100})
    b.hello("w", {"name": "w", "pid": 7})
    one = b.exchange("w", None, [], 0.0, 100, 0.0)
    two = b.exchange("w", job_id, _answer(one), 0.0, 100, 0.0)
    three = b.exchange("w", job_id, _answer(two, error_at=_first_id(two) + 5), 0.0, 100, 0.0)
    assert b.progress(job_id)["done"] == 199
    _crash(b)

    b2 = _broker(journal)
    job = b2.jobs[job_id]
    assert b2.current is job and job.final == 199 and not job.done
    retried = _first_id(two) + 5
    assert job.state_of(retried) == PENDING and job.attempts_of(retried) == 1
    assert job.errors[retried] == "ValueError: once"
    held = range(_first_id(three), _first_id(three) + 100)
    assert {job.state_of(t) for t in held} == {PENDING}  # leased at the crash: queued again
    assert {job.attempts_of(t) for t in held} == {0}  # and the crash cost them no attempt
    assert len(job.queue) == 1000 - 199
    st = b2.status()["journal"]
    assert st["replayed_jobs"] == 1 and st["replayed_at"]
    assert st["resumed"] == {"job": job_id, "done": 199, "total": 1000}
    assert b2.status()["workers"][0]["id"] == "w" and not b2.status()["workers"][0]["connected"]

    # the worker comes back: its results of the lease before the crash count, once
    b2.hello("w", {"name": "w", "pid": 7})
    b2.exchange("w", job_id, _answer(three), 0.0, 0, 0.0)
    assert b2.progress(job_id)["done"] == 299 and job.counts["stale"] == 0
    b2.exchange("w", job_id, _answer(one), 0.0, 0, 0.0)  # sent again: duplicates
    assert b2.progress(job_id)["done"] == 299 and job.counts["duplicates"] == 100
    _drain(b2)
    rep = b2.report(job_id)
    assert rep["ok"] and rep["totals"]["ok"] == 1000 and rep["totals"]["retries"] == 1
    assert rep["totals"]["duplicates"] == 100
    [worker] = rep["workers"]
    assert worker["id"] == "w" and worker["tasks"] == 1000 and worker["duplicates"] == 100


def test_what_was_accepted_and_not_committed_runs_again(tmp_path: Path) -> None:
    """A worker hears "accepted" before the journal's thread commits (at most
    ``JOURNAL_LAG`` changes behind): if the master dies in between, those tasks are pending
    after the replay and run again. Nothing is lost, nothing counted twice."""
    journal = tmp_path / "j.db"
    b = _broker(journal)
    job_id = b.submit({"kind": "square", "tasks": 1000, "batch": 100})
    b.hello("w", {"name": "w"})
    one = b.exchange("w", None, [], 0.0, 100, 0.0)
    two = b.exchange("w", job_id, _answer(one), 0.0, 100, 0.0)
    assert b.journal is not None
    b.journal.flush()
    with b.journal._write_lock:  # the disk stalls: the writer cannot commit
        three = b.exchange("w", job_id, _answer(two), 0.0, 100, 0.0)
        assert b.progress(job_id)["done"] == 200 and three is not None  # accepted, answered
        b.journal._conn.close()  # and the master dies
    b2 = _broker(journal)
    assert b2.progress(job_id)["done"] == 100  # the second lease's results were not on disk
    _drain(b2)
    rep = b2.report(job_id)
    assert rep["ok"] and rep["totals"]["ok"] == 1000 and rep["totals"]["duplicates"] == 0


def test_an_ended_job_comes_back_as_it_ended(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    b = _broker(journal, results_dir=str(tmp_path))
    job_id = b.submit({"kind": "square", "tasks": 300, "batch": 100, "retry_errors": False,
                       "results": "stream"})  # fmt: skip
    b.hello("w", {"name": "w"})
    reply = b.exchange("w", None, [], 0.0, 100, 0.0)
    reply = b.exchange("w", job_id, _answer(reply, error_at=3), 0.0, 100, 0.0)
    while reply is not None:
        reply = b.exchange("w", job_id, _answer(reply), 0.0, 100, 0.0)
    before = b.report(job_id, results=True)
    assert before["finished"] and before["totals"]["failed"] == 1
    _crash(b)

    after = _broker(journal, results_dir=str(tmp_path)).report(job_id, results=True)
    for key in ("job", "totals", "dead_letters", "failures", "lost", "workers", "checks",
                "summary", "values", "results", "ok", "results_by_peer"):  # fmt: skip
        assert after[key] == before[key], key
    assert after["elapsed_seconds"] == pytest.approx(before["elapsed_seconds"], abs=1e-6)


def test_a_job_that_keeps_values_has_each_value_once_after_a_restart(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    b = _broker(journal, results_dir=str(tmp_path))
    job_id = b.submit({"kind": "square", "tasks": 500, "batch": 100, "results": "stream"})
    b.hello("w", {"name": "w"})
    one = b.exchange("w", None, [], 0.0, 100, 0.0)
    two = b.exchange("w", job_id, _answer(one), 0.0, 100, 0.0)
    _crash(b)
    b2 = _broker(journal, results_dir=str(tmp_path))
    b2.hello("w", {"name": "w"})
    b2.exchange("w", job_id, _answer(one) + _answer(two), 0.0, 0, 0.0)  # one: duplicates
    _drain(b2)
    rep = b2.report(job_id, results=True)
    ids = [r["id"] for r in rep["results"]]
    assert rep["ok"] and ids == list(range(500)), ids[:10]
    payloads = b2.jobs[job_id].payloads
    assert all(r["value"] == payloads[r["id"]] ** 2 for r in rep["results"])


def test_explicit_payloads_are_journaled_with_the_job(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    b = _broker(journal)
    payloads = [7 * i + 3 for i in range(250)]
    job_id = b.submit({"kind": "square", "batch": 100}, payloads)
    b.hello("w", {"name": "w"})
    one = b.exchange("w", None, [], 0.0, 100, 0.0)
    b.exchange("w", job_id, _answer(one), 0.0, 0, 0.0)
    _crash(b)
    b2 = _broker(journal)
    assert list(b2.jobs[job_id].payloads) == payloads
    _drain(b2)
    rep = b2.report(job_id)
    assert rep["ok"] and rep["totals"]["wrong_values"] == 0 and rep["totals"]["ok"] == 250


def test_an_expired_lease_stays_spent_after_a_restart(tmp_path: Path) -> None:
    now = [0.0]
    journal = tmp_path / "j.db"
    b = _broker(journal)
    job_id = b.submit({"kind": "square", "tasks": 10, "batch": 10, "lease_seconds": 1.0,
                       "max_attempts": 2})  # fmt: skip
    b.jobs[job_id].clock = lambda: now[0]
    b.hello("w", {"name": "w"})
    b.exchange("w", None, [], 0.0, 10, 0.0)
    now[0] = 5.0
    assert b.reap() == 10
    _crash(b)
    job = _broker(journal).jobs[job_id]
    assert {job.attempts_of(t) for t in range(10)} == {1}
    assert job.expired.overlap(0, 10) == [(0, 10)] and job.counts["expired"] == 1
    job.stop("cancelled")
    assert job.letters[DEAD][0]["error"] == EXPIRED


def test_a_classic_task_taken_at_the_crash_is_lost_and_stays_lost(tmp_path: Path) -> None:
    """Classic has no leases: what a tutorial worker held when the master died is lost
    (at-most-once), what nobody had taken is served again."""
    journal = tmp_path / "j.db"
    b = _broker(journal)
    job_id = b.submit({"kind": "square", "protocol": "classic", "tasks": 10})
    taken = [b.classic_take(False) for _ in range(3)]
    b.classic_result(f"{taken[0]} * {taken[0]} = {taken[0] ** 2}")
    _crash(b)

    b2 = _broker(journal)
    job = b2.jobs[job_id]
    assert job.counts["ok"] == 1 and job.counts["lost"] == 2
    assert "master restarted" in job.letters[LOST][0]["error"]
    _crash(b2)  # the losses the replay decided are in the journal too
    b3 = _broker(journal)
    while (n := b3.classic_pending()) > 0:
        p = b3.classic_take(False)
        b3.classic_result(f"{p} * {p} = {p * p}")
        assert b3.classic_pending() == n - 1
    rep = b3.report(job_id)
    assert rep["finished"] and not rep["ok"]
    assert (rep["totals"]["ok"], rep["totals"]["lost"]) == (8, 2)


def test_a_finished_job_has_no_rows_left_and_history_drops_reach_the_journal(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "j.db"
    b = _broker(journal, history_bytes=1)  # keeps only the current job
    ids = []
    for _ in range(3):
        ids.append(b.submit({"kind": "square", "tasks": 100}))
        _drain(b)
    assert list(b.jobs) == ids[-1:]
    assert b.journal is not None
    b.journal.close()
    with _db(journal) as db:
        assert [r[0] for r in db.execute("SELECT id FROM jobs")] == ids[-1:]
        assert db.execute("SELECT count(*) FROM changes").fetchone() == (0,)  # compacted
        assert db.execute("SELECT count(*) FROM jobs WHERE ended IS NULL").fetchone() == (0,)
    b2 = _broker(journal)
    assert list(b2.jobs) == ids[-1:] and b2.report()["ok"]
    with pytest.raises(UnknownJob):
        b2.progress(ids[0])


def test_a_new_job_after_a_replay_gets_its_own_id(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    b = _broker(journal)
    first = b.submit({"kind": "square", "tasks": 5})
    _drain(b)
    _crash(b)
    b2 = _broker(journal)
    second = b2.submit({"kind": "square", "tasks": 5})
    _drain(b2)
    assert second != first and b2.report(first)["ok"] and b2.report(second)["ok"]


# -- refusals ----------------------------------------------------------------------------


def _foreign(path: Path) -> None:
    with _db(path) as db:
        db.execute("CREATE TABLE t (x)")


def _garbage(path: Path) -> None:
    path.write_bytes(b"not a database, " * 512)


def _schema(version: int) -> Any:
    def make(path: Path) -> None:
        open_journal(str(path)).close()
        with _db(path) as db:
            db.execute(f"PRAGMA user_version = {version}")

    return make


def _bad_row(path: Path) -> None:
    b = Broker(journal=open_journal(str(path)))
    b.submit({"kind": "square", "tasks": 10})
    _crash(b)
    with _db(path) as db:
        db.execute("INSERT INTO changes VALUES (1, 8, 5, 2, x'01', NULL, '', '', NULL, NULL)")


def _twice(path: Path) -> None:
    b = Broker(journal=open_journal(str(path)))
    b.submit({"kind": "square", "tasks": 10})
    _crash(b)
    with _db(path) as db:
        db.executemany("INSERT INTO changes VALUES (1, ?, 3, 2, x'01', NULL, '', '', NULL, NULL)",
                       [(0,), (2,)])  # fmt: skip


REFUSED = {
    "another program's sqlite file": (_foreign, "not a distproc journal"),
    "not a database at all": (_garbage, "not a sqlite database"),
    "an older schema": (_schema(SCHEMA - 1), "older distproc"),
    "a newer schema": (_schema(SCHEMA + 1), "newer distproc"),
    "a row outside its job": (_bad_row, "outside its 10 tasks"),
    "an id made final twice": (_twice, "made final twice"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_journal_that_is_not_right_is_refused_unchanged(tmp_path: Path, case: str) -> None:
    make, fragment = REFUSED[case]
    path = tmp_path / "j.db"
    make(path)
    before = path.read_bytes()
    with pytest.raises(JournalError, match=fragment):
        Broker(journal=open_journal(str(path)))
    if case in ("another program's sqlite file", "not a database at all"):
        assert path.read_bytes() == before  # nothing written into a file that is not ours


def test_older_schema_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    _schema(SCHEMA - 1)(path)
    with pytest.raises(JournalError, match="finish its jobs with that version, or move"):
        open_journal(str(path))


def test_a_journal_in_use_by_another_master_is_refused(tmp_path: Path) -> None:
    first = open_journal(str(tmp_path / "j.db"))
    with pytest.raises(JournalError, match="in use by another master"):
        open_journal(str(tmp_path / "j.db"))
    first.close()
    open_journal(str(tmp_path / "j.db")).close()  # free again once the first let it go


@pytest.mark.parametrize(
    ("where", "fragment"),
    [("missing/j.db", "does not exist"), (".", "not a file"), ("/proc/j.db", "cannot")],
)
def test_a_path_that_cannot_be_a_journal_is_refused(
    tmp_path: Path, where: str, fragment: str
) -> None:
    path = where if where.startswith("/") else str(tmp_path / where)
    with pytest.raises(JournalError, match=fragment):
        open_journal(path)


def test_a_failed_commit_goes_to_on_failure_and_nothing_is_half_written(tmp_path: Path) -> None:
    j = open_journal(str(tmp_path / "j.db"))
    seen: list[BaseException] = []
    j.on_failure = seen.append
    j.commit(j.add(("job", "a-1", {"kind": "square", "tasks": 3}, None, 0.0)))
    seq = j.add(("rows", "a-1", [(0, 1, OK, b"\x01", None, "w", "", None)], {}, [], None, []))
    j.add(("nonsense",))
    with pytest.raises(ValueError, match="unknown journal change"):
        j.commit(seq)
    assert len(seen) == 1
    j.close()
    with _db(tmp_path / "j.db") as db:
        assert db.execute("SELECT count(*) FROM changes").fetchone() == (0,)  # rolled back


def test_the_header_says_what_the_file_is(tmp_path: Path) -> None:
    open_journal(str(tmp_path / "j.db")).close()
    with _db(tmp_path / "j.db") as db:
        assert db.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA,)


def test_group_commit_writes_what_every_thread_handed_over_in_one_transaction(
    tmp_path: Path,
) -> None:
    j: Journal = open_journal(str(tmp_path / "j.db"))
    j.commit(j.add(("job", "a-1", {"kind": "square", "tasks": 9}, None, 0.0)))
    seqs = [j.add(("rows", "a-1", [(t, 1, OK, b"\x01", None, "w", "", None)], {"ok": t + 1},
                   [], None, [])) for t in range(3)]  # fmt: skip
    j.commit(seqs[0])  # the first caller writes all three
    assert j.stats.commits == 2 and j.stats.rows == 3
    j.commit(seqs[2])  # the last finds its change written: no transaction
    assert j.stats.commits == 2
    j.close()
    with _db(tmp_path / "j.db") as db:
        kept = [json.loads(p) for (p,) in db.execute("SELECT progress FROM changes WHERE "
                                                      "progress IS NOT NULL")]  # fmt: skip
    assert [k["counts"] for k in kept] == [{"ok": 3}]  # one record, the last counters won


def test_results_a_master_did_not_take_wait_for_the_next_one() -> None:
    """A master that does not know the worker (``("hello",)``: it restarted) took none of
    the results sent with that exchange: they wait in the outbox for the next session, which
    sends them to the master that resumed the job (they were dropped before)."""
    from distproc.worker import Worker, WorkerConfig

    class Restarted:
        def exchange(self, *_args: Any) -> tuple[str]:
            return ("hello",)

    w = Worker(WorkerConfig(address=("127.0.0.1", 1), authkey=b"k"))
    w._broker = Restarted()
    w.outbox.add("j-1", 7, 0, [0, 1, 4])
    assert w._exchange("j-1", 0, 0.0) == ("hello",)
    assert len(w.outbox) == 3
    assert w.outbox.take("j-1")[0] == [(7, [(0, 3)], [0, 1, 4], [])]


def test_an_exchange_waits_for_a_journal_that_falls_behind(tmp_path: Path) -> None:
    """The commits may trail what was accepted by ``LAG_CHANGES`` changes or ``LAG_ROWS``
    rows, no more: a key holder naming a million single ids cannot pile rows up in memory."""
    j = open_journal(str(tmp_path / "j.db"))
    first = j.add(("job", "a-1", {"kind": "square", "tasks": 10**6}, None, 0.0))
    assert not j.lagging(first)
    many = [(t, 1, OK, b"\x01", None, "w", "", None) for t in range(0, 2 * LAG_ROWS + 2, 2)]
    seq = j.add(("rows", "a-1", many, {"ok": LAG_ROWS}, [], None, []))
    assert j.lagging(seq)
    j.commit(seq)
    assert not j.lagging(seq)
    for _ in range(LAG_CHANGES + 1):
        seq = j.add(("rows", "a-1", [], {"ok": LAG_ROWS}, [], None, []))
    assert j.lagging(seq)
    j.flush()
    assert not j.lagging(seq) and j.stats.rows == LAG_ROWS + 1


class _NoSecondPickle:
    """A value that arrived pickled and will not pickle again."""

    def __reduce__(self) -> Any:
        raise TypeError("not twice")

    def __repr__(self) -> str:
        return "<no second pickle>"


def test_nothing_a_worker_sends_can_make_a_commit_fail(tmp_path: Path) -> None:
    """A failed commit stops the master (as a crash would), so what a key holder sends must
    never fail one: an identity holding itself, a value that does not pickle again. Payloads
    that do not pickle again are refused at submit, with nothing changed."""
    journal = tmp_path / "j.db"
    b = _broker(journal, results_dir=str(tmp_path))
    assert b.journal is not None
    failures: list[BaseException] = []
    b.journal.on_failure = failures.append
    with pytest.raises(JobError, match="payloads the journal cannot keep"):
        b.submit({"kind": "mod:fn"}, [_NoSecondPickle()])
    assert b.current is None
    job_id = b.submit({"kind": "mod:fn", "tasks": 20, "batch": 10, "results": "stream"})
    identity: dict[str, Any] = {"name": "w"}
    identity["me"] = identity
    b.hello("w", identity)
    reply = b.exchange("w", None, [], 0.0, 10, 0.0)
    reply = b.exchange("w", job_id, _answer(reply, value=lambda p: _NoSecondPickle()), 0.0, 10,
                       0.0)  # fmt: skip
    _crash(b)
    assert failures == []
    b2 = _broker(journal, results_dir=str(tmp_path))
    [kept] = b2.status()["workers"][0]["identity"].values()  # {"unreadable": its repr}
    assert kept.startswith("{'name': 'w', 'me': {")
    b2.hello("w", {"name": "w"})
    while reply is not None:
        reply = b2.exchange("w", job_id, _answer(reply, value=str), 0.0, 10, 0.0)
    rep = b2.report(job_id, results=True)
    assert rep["finished"] and rep["totals"]["ok"] == 20
    assert [r["value"] for r in rep["results"][:10]] == ["<no second pickle>"] * 10
