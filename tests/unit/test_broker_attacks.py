"""What an attacker review found in the broker and the ledger, each a regression test on the
broker itself (in this process: the calls are the same ones a proxy makes)."""

from __future__ import annotations

import queue
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from distproc import calls, registry, wire
from distproc.broker import Broker, JobError
from distproc.ledger import DEAD
from distproc.results import MAX_INLINE_BYTES


def _answer(reply: tuple, value: Any = None) -> list[tuple]:
    """The results of a lease (``value(payload)``, default the right square), as sent."""
    _job, lid, _, kind, ranges, source = reply
    payloads = wire.payloads_of(kind, ranges, source)
    return [(lid, ranges, [value(p) if value else p * p for p in payloads], [])]


def _drain(b: Broker, wid: str = "w", value: Any = None) -> None:
    """Lease everything and answer it."""
    b.hello(wid, {"name": wid})
    reply = b.exchange(wid, None, [], 0.0, 1000, 0.0)
    while reply is not None:
        reply = b.exchange(wid, reply[0], _answer(reply, value), 0.0, 1000, 0.0)


@pytest.mark.parametrize(
    "value",
    [lambda p: {(p,): 1}, lambda p: 10**5000, lambda p: [[[[p]]]]],
    ids=["a tuple key", "an int past str()'s limit", "nested"],
)
def test_a_value_the_stream_cannot_encode_still_counts(tmp_path: Path, value: Any) -> None:
    """json.dumps raised inside accept() after the task was marked ok: the job was wedged
    for good (cancel could not end it, every later submit was refused)."""
    b = Broker(results_dir=str(tmp_path))
    job_id = b.submit({"kind": "mod:fn", "tasks": 50, "results": "stream"})
    _drain(b, value=value)
    rep = b.report(job_id, results=True)
    assert rep["finished"] and rep["totals"]["ok"] == 50 and len(rep["results"]) == 50
    assert b.submit({"kind": "square", "tasks": 1})


@pytest.mark.parametrize(
    ("kind", "payloads", "fragment"),
    [("square", [3, "x", 4], "payload 1"), ("cpu", [10**12], "at most"),
     ("square", [True], "payload 0"), ("io", [-1], "payload 0")],
)  # fmt: skip
def test_explicit_payloads_a_built_in_kind_cannot_take_are_refused(
    kind: str, payloads: list[Any], fragment: str
) -> None:
    """A string payload for square raised TypeError inside accept() (the job wedged); a
    cpu payload of 1e8 made the master compute for an hour under its lock."""
    b = Broker()
    with pytest.raises(JobError, match=fragment):
        b.submit({"kind": kind}, payloads)
    assert b.current is None


def test_a_huge_int_classic_result_is_refused_without_a_square_root() -> None:
    """put() of a 10M-bit int ran math.isqrt under the lock: the master froze for 28 s."""
    b = Broker()
    job_id = b.submit({"kind": "square", "protocol": "classic", "tasks": 2})
    b.classic_take(False)
    b.classic_result(1 << 10_000_000)
    assert b.progress(job_id)["done"] == 0 and b.jobs[job_id].counts["stale"] == 1


def test_results_for_tasks_never_handed_out_are_stale() -> None:
    """A key holder finished a job without leasing anything; now a result counts only for
    a task that was handed out."""
    b = Broker()
    job_id = b.submit({"kind": "square", "tasks": 5, "batch": 5})
    b.hello("w", {"name": "w"})
    b.exchange("w", job_id, [(7, [(0, 5)], [0] * 5, [])], 0.0, 0, 0.0)  # lease 7: none
    assert b.progress(job_id)["done"] == 0 and b.jobs[job_id].counts["stale"] == 5
    b.classic_result("3 * 3 = 9")  # not a classic job: ignored
    _drain(b)
    assert b.report(job_id)["ok"]


def test_repeated_lease_ids_are_acknowledged_once() -> None:
    """2,000 repeats of one lease id made accept() rescan a 100k lease each time (22 s under
    the lock; the allowed 1,000,000 repeats would take hours). Now a lease is acknowledged
    per range: 99,999 more entries naming it cost one range look-up each; 900,000 held the
    lock 6 s, so a call carries at most ``MAX_RANGES`` ranges."""
    b = Broker()
    job_id = b.submit({"kind": "square", "tasks": 100_000, "batch": 100_000})
    b.hello("w", {"name": "w"})
    reply = b.exchange("w", None, [], 0.0, 100_000, 0.0)
    [(lid, ranges, values, _)] = _answer(reply)
    assert ranges == [(0, 100_000)]
    first = [(lid, [(0, 99_999)], values[:-1], [])]
    again = [(lid, [(0, 1)], values[:1], [])]
    with pytest.raises(ValueError, match="100,000 ranges"):
        b.exchange("w", job_id, first + again * calls.MAX_RANGES, 0.0, 0, 0.0)
    assert b.progress(job_id)["done"] == 0  # refused whole
    b.exchange("w", job_id, first + again * (calls.MAX_RANGES - 1), 0.0, 0, 0.0)
    assert lid in b.jobs[job_id].leases  # its last task is still out
    assert b.jobs[job_id].counts["duplicates"] == calls.MAX_RANGES - 1
    b.exchange("w", job_id, [(lid, [(99_999, 1)], values[-1:], [])], 0.0, 0, 0.0)
    assert b.report(job_id)["ok"]


def test_cancel_of_ten_million_with_a_retry_pending_stays_small() -> None:
    """One pending retry sent cancel down a per-task path: 13.9 s under the lock and a
    peak of 603 MB (a sorted list of 10M ids)."""
    b = Broker()
    job_id = b.submit({"kind": "square", "tasks": 10_000_000, "batch": 10})
    b.hello("w", {"name": "w"})
    job, lid, _, _, [(first, _)], _ = b.exchange("w", None, [], 0.0, 10, 0.0)
    b.exchange("w", job, [(lid, [(first, 1)], [None], [(first, "ValueError: once")])], 0.0, 0, 0.0)
    tracemalloc.start()
    b.cancel(job_id, "cancelled")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 40 * 2**20, peak  # the 10 MB state array, translated once
    rep = b.report(job_id)
    assert rep["totals"]["dead"] == 10_000_000 and rep["dead_letters"][0]["error"] == (
        "ValueError: once"
    )
    assert b.jobs[job_id].state_counts()[DEAD] == 10_000_000


def test_a_streamed_report_too_big_to_list_says_where_the_file_is(tmp_path: Path) -> None:
    """1,000,000 rows in one reply took the master to 1.6 GB: results are capped in bytes."""
    b = Broker(results_dir=str(tmp_path))
    job_id = b.submit({"kind": "mod:fn", "tasks": 20, "results": "stream"})
    _drain(b, value=lambda p: "x" * (MAX_INLINE_BYTES // 10))
    with pytest.raises(JobError, match="too many to list") as err:
        b.report(job_id, results=True)
    assert str(tmp_path) in str(err.value)
    assert b.report(job_id)["totals"]["ok"] == 20  # without results: fine


def test_explicit_payloads_are_not_kept_once_the_job_ends() -> None:
    """Four cancelled jobs of 3M explicit payloads took the master from 23 to 494 MB: the
    history kept payloads it did not count."""
    b = Broker()
    job_id = b.submit({"kind": "mod:fn"}, list(range(100_000)))
    held = b.jobs[job_id].nbytes()
    b.cancel(job_id)
    job = b.jobs[job_id]
    assert held > 800_000 and job.nbytes() < 50_000, (held, job.nbytes())
    assert job.payloads[0] == 0 and job.payloads[99_999] is None  # a named one is kept
    assert "payload 0" in b.report(job_id)["summary"]


def test_a_hello_flood_costs_an_id_per_gone_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """20,000 hellos with new ids and 16 KB identities added 330 MB."""
    monkeypatch.setattr(registry, "MAX_LIVE_WORKERS", 500)
    b = Broker()
    big = {"name": "x", "blob": "y" * 10_000}
    for i in range(500):
        b.hello(f"w{i}", big)
    with pytest.raises(ValueError, match="500 live workers"):
        b.hello("one-more", big)
    for rec in b.registry.by_index:
        rec.last_seen -= 60  # all gone
    for i in range(500, 1600):
        b.hello(f"w{i}", big)
        b.registry.by_index[-1].last_seen -= 60
    kept = sum(1 for r in b.registry.by_index if r.identity)
    assert len(b.registry.by_index) == 1600 and kept <= registry.KEEP_IDENTITIES + 64


def test_a_classic_get_from_a_connection_that_takes_nothing_is_empty() -> None:
    b = Broker()
    with pytest.raises(queue.Empty):
        b.classic_take(True, 0.05)


def test_a_submit_refused_for_its_results_file_leaves_the_job_numbers_as_they_were(
    tmp_path: Path,
) -> None:
    """Refused, nothing changed: the next job still gets the number the refused one would
    have had (it was used up before the results file was tried)."""
    (tmp_path / "a-file").write_text("")
    b = Broker(results_dir=str(tmp_path / "a-file" / "results"))  # not a directory
    with pytest.raises(JobError, match="cannot stream results"):
        b.submit({"kind": "square", "tasks": 5, "results": "stream"})
    assert b.submit({"kind": "square", "tasks": 5}) == f"{b.instance}-1"
