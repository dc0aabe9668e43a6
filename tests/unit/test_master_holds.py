"""The master holds against careless and hostile key holders: each finding, reproduced on
loopback with a real master process, then the fix shown to hold."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from distproc import wire
from distproc.client import broker, connect
from harness import Procs


def _broker(procs: Procs) -> Any:
    return broker(connect(("127.0.0.1", procs.port), procs.key.encode(), timeout=10))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks


def _rss_mib(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


MALFORMED = {  # (an entry added to the right results, busy)
    "a range's first id a string": ((1, [("0", 1)], [0], []), 0.0),
    "a range's first id a float": ((1, [(0.0, 1)], [0], []), 0.0),
    "a range's first id None": ((1, [(None, 1)], [0], []), 0.0),
    "a range's first id a bool": ((1, [(True, 1)], [1], []), 0.0),
    "a range of 0 ids": ((1, [(0, 0)], [], []), 0.0),
    "a 3-tuple range": ((1, [(0, 1, 0)], [0], []), 0.0),
    "a 3-tuple entry": ((1, [(0, 1)], [0]), 0.0),
    "a lease id a string": (("1", [(0, 1)], [0], []), 0.0),
    "values a dict": ((1, [(0, 1)], {0: 0}, []), 0.0),
    "a 1-tuple error": ((1, [(0, 1)], [None], [(0,)]), 0.0),
    "an error outside its ranges": ((1, [(0, 1)], [0], [(3, "x")]), 0.0),
    "one value too few": ((1, [(0, 2)], [0], []), 0.0),
    "ranges out of order": ((1, [(2, 1), (0, 1)], [4, 0], []), 0.0),
    "busy None": (None, None),
    "busy NaN": (None, math.nan),
    "a task id out of range": ((1, [(10**9, 1)], [0], []), 0.0),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_batch_is_refused_and_the_same_batch_sent_right_counts(
    procs: Procs, case: str
) -> None:
    """One bad entry in an otherwise valid batch used to mark tasks ok without counting
    them: the job never finished, cancel did nothing, every later submit failed."""
    procs.master()
    b = _broker(procs)
    job_id = b.submit({"kind": "square", "tasks": 4, "batch": 4})
    b.hello("attacker", {"name": "attacker"})
    job, lease_id, _, kind, ranges, source = b.exchange("attacker", None, [], 0.0, 4, 0.0)
    good = [(lease_id, ranges, [p * p for p in wire.payloads_of(kind, ranges, source)], [])]
    bad, busy = MALFORMED[case]
    with pytest.raises(ValueError):
        b.exchange("attacker", job, good + ([bad] if bad else []), busy, 0, 0.0)
    before = b.progress(job_id)
    assert before["done"] == 0 and before["ok"] == 0, before  # nothing was half-applied
    assert b.exchange("attacker", job, good, 0.0, 0, 0.0) is None
    after = b.wait(job_id, 5)
    assert after["finished"] and after["ok"] == 4, after
    assert b.submit({"kind": "square", "tasks": 1})  # the master takes the next job


@pytest.mark.parametrize(
    "bad",
    [[("0", 1)], [(0, 0)], [(-1, 2)], [(0, 1, 2)], [(True, 1)], [[0, 1]], (0, 1), "0-3", None,
     [(0, 1)] * 100_001],
    ids=lambda bad: repr(bad)[:20],
)  # fmt: skip
def test_malformed_release_is_refused_and_changes_nothing(procs: Procs, bad: Any) -> None:
    """``release`` takes ranges now: each is checked before the job is touched."""
    procs.master()
    b = _broker(procs)
    job_id = b.submit({"kind": "square", "tasks": 4, "batch": 4})
    b.hello("w", {"name": "w"})
    job, lease_id, _, kind, ranges, source = b.exchange("w", None, [], 0.0, 4, 0.0)
    with pytest.raises(ValueError, match="ranges"):
        b.release("w", job, bad)
    for wid, job_arg in ((7, job), ("w", ["j"])):
        with pytest.raises(ValueError, match=r"wid|job_id"):
            b.release(wid, job_arg, [(0, 4)])
    assert b.status()["job"]["done"] == 0
    assert b.release("w", job, [(1, 2)]) == 2  # the same call, right: 1 and 2 go back
    values = [p * p for p in wire.payloads_of(kind, ranges, source)]
    done = [(lease_id, [(0, 1), (3, 1)], [values[0], values[3]], [])]
    assert b.exchange("w", job, done, 0.0, 4, 0.0)[4] == [(1, 2)]  # merged again: one range
    assert b.progress(job_id)["ok"] == 2


def test_wait_nan_is_refused_and_spins_no_core(procs: Procs) -> None:
    """``exchange(..., wait=nan)`` made its server thread spin forever, even after the
    client had gone."""
    master = procs.master()
    b = _broker(procs)
    b.hello("w", {"name": "w"})
    for bad in (math.nan, math.inf, "1", None):
        with pytest.raises(ValueError, match="wait"):
            b.exchange("w", None, [], 0.0, 1, bad)
    with pytest.raises(ValueError, match="seconds"):
        b.wait("nope", math.nan)
    del b
    t0 = _cpu_seconds(master.pid)
    time.sleep(2.0)
    assert _cpu_seconds(master.pid) - t0 < 0.5  # idle, not a core spinning


def test_huge_wait_is_clamped_not_held(procs: Procs) -> None:
    procs.master()
    b = _broker(procs)
    b.hello("w", {"name": "w"})
    t0 = time.monotonic()
    assert b.exchange("w", None, [], 0.0, 0, 1e300) is None  # clamped to 30 s
    assert time.monotonic() - t0 < 40


def test_cancel_always_ends_the_current_job(procs: Procs) -> None:
    procs.master()
    b = _broker(procs)
    job_id = b.submit({"kind": "square", "tasks": 100, "batch": 10})
    b.hello("w", {"name": "w"})
    b.exchange("w", None, [], 0.0, 10, 0.0)  # a lease held, never answered
    state = b.cancel(None, "cancelled by the test")
    assert state["finished"] and state["dead"] == 100 and state["job"] == job_id
    rep = b.report(job_id)
    assert rep["totals"]["dead"] == 100 and "cancelled by the test" in rep["summary"]
    assert b.submit({"kind": "square", "tasks": 1})


def test_classic_task_put_is_refused_in_plain_words(procs: Procs) -> None:
    procs.master()
    m = connect(("127.0.0.1", procs.port), procs.key.encode(), timeout=10)
    with pytest.raises(ValueError, match="the master makes the tasks"):
        m.get_task_queue().put(5)
    with pytest.raises(ValueError, match="timeout"):
        m.get_task_queue().get(True, math.nan)


def test_memory_grows_with_what_is_in_flight_not_with_what_is_done(procs: Procs) -> None:
    """Three 1M-task jobs left the master at 149, 274, then 392 MB resident: results were
    kept in the job history. Now a finished task costs a state, packed once the job ends."""
    master = procs.master()
    procs.worker("--name", "w1")
    procs.wait_workers(1)
    code, rep = procs.submit("--tasks", "1000", "--batch", "1000")
    assert code == 0
    start = _rss_mib(master.pid)
    for _ in range(3):
        code, rep = procs.submit("--tasks", "1000000", "--batch", "2048", timeout=180)
        assert code == 0 and rep["totals"]["ok"] == 1_000_000, rep["summary"]
        assert rep["values"]["mode"] == "drop"
    after = _rss_mib(master.pid)
    peak = _rss_mib(master.pid, "VmHWM")
    print(f"master RSS: start {start:.1f} MiB, after 3x1M {after:.1f} MiB, peak {peak:.1f} MiB")
    assert after - start < 8, (start, after)
    assert peak - start < 40, (start, peak)


def test_streamed_results_are_read_back_and_dropped_ones_say_so(procs: Procs) -> None:
    procs.master("--results-dir", str(procs.tmp / "results"))
    procs.worker("--name", "w1")
    code, rep = procs.submit("--tasks", "300", "--results")
    assert code == 0 and rep["values"]["mode"] == "stream" and rep["values"]["written"] == 300
    assert sorted(r["id"] for r in rep["results"]) == list(range(300))
    assert Path(rep["values"]["path"]).parent == procs.tmp / "results"
    code, rep = procs.submit("--tasks", "10")
    assert code == 0 and rep["values"] == {"mode": "drop", "path": None, "written": 0}
    r = procs.cli("report", "--master", procs.master_addr, "--results")
    assert r.returncode == 1 and "dropped after checking" in r.stderr


def test_tutorial_worker_killed_holding_a_task_ends_the_job_at_once(procs: Procs) -> None:
    """A classic job whose tutorial worker died holding a task used to end only at its
    time-out: the at-most-once lesson was shown as a hang. Now the task is lost as the
    connection closes, and the job ends when every task is answered or lost."""
    procs.master()
    script = textwrap.dedent(f"""
        import os, sys
        from multiprocessing.managers import BaseManager
        class M(BaseManager): pass
        M.register('get_task_queue')
        m = M(address=('127.0.0.1', {procs.port}), authkey={procs.key.encode()!r})
        m.connect()
        print(m.get_task_queue().get(timeout=20), flush=True)
        os._exit(1)
    """)
    thief = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    sub = procs.submit_bg("--protocol", "classic", "--tasks", "1", "--timeout", "120")
    taken = int(thief.stdout.readline())
    assert thief.wait(timeout=20) == 1
    t0 = time.monotonic()
    out, _ = sub.communicate(timeout=60)
    rep = json.loads(out)
    assert sub.returncode == 3 and time.monotonic() - t0 < 10  # not the 120 s time-out
    assert rep["totals"]["lost"] == 1 and rep["totals"]["ok"] == 0
    [lost] = rep["lost"]
    assert lost["id"] == 0 and lost["worker"] == "classic@127.0.0.1"
    assert f"payload {taken}" in rep["summary"] and "classic@127.0.0.1" in rep["summary"]


def test_the_connection_cap_follows_the_pids_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cap fixed at 200 would refuse the 101st worker of a master given pids 4096; one past
    the pids limit would let a flood kill the accepter (can't start new thread)."""
    from distproc import identity, server

    pids_max = tmp_path / "pids.max"
    monkeypatch.setattr(identity, "PIDS_MAX_FILES", (str(tmp_path / "none"), str(pids_max)))
    pids_max.write_text("256\n")
    assert identity.pids_limit() == 256 and server.default_max_connections(256) == 200
    pids_max.write_text("4096\n")
    assert server.default_max_connections(identity.pids_limit()) == 1024
    pids_max.write_text("max\n")
    monkeypatch.setattr(identity.os, "geteuid", lambda: 0)
    assert identity.pids_limit() is None  # root: RLIMIT_NPROC does not bind
    assert server.default_max_connections(None) == server.MAX_CONNECTIONS_UNLIMITED
    assert server.default_max_connections(40) == 8
