"""Range leases on loopback: a worker killed mid-range has exactly the unfinished part run
again, and a stopping worker gives back exactly the part it has not started."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from harness import Procs


def _notes(path: Path) -> dict[int, list[int]]:
    """Which process ran which ids (``distproc_kinds.chaos:noted``)."""
    runs: dict[int, list[int]] = {}
    for line in path.read_text().splitlines():
        pid, tid = map(int, line.split())
        runs.setdefault(pid, []).append(tid)
    return runs


def test_a_worker_killed_mid_range_has_exactly_the_unfinished_part_run_again(
    procs: Procs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The victim leases ids 0-3 on two threads: 0 and 1 finish and are acknowledged (the
    lease splits: 2-3 still out), 2 and 3 hang, and the same round trip leases 4-5, queued
    behind them. Killed, its leases expire: 2-5 run again, 0 and 1 never do."""
    notes = procs.tmp / "notes"
    hold = Path(f"{notes}.hold")
    hold.touch()
    monkeypatch.setenv("DISTPROC_NOTES", str(notes))  # the workers inherit it
    procs.master()
    victim = procs.worker("--name", "victim", "--mode", "threads", "--concurrency", "2")
    procs.wait_workers(1)
    sub = procs.submit_bg("--kind", "distproc_kinds.chaos:noted", "--tasks", "12", "--batch",
                          "4", "--lease-seconds", "1", "--results")  # fmt: skip
    procs.wait_done(2)  # 0 and 1 acknowledged; 2 and 3 hang; 4 and 5 wait in the pool
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    hold.unlink()
    survivor = procs.worker("--name", "survivor", "--mode", "threads", "--concurrency", "2")
    out, _ = sub.communicate(timeout=60)
    rep = json.loads(out)
    assert sub.returncode == 0, rep["checks"]
    rows = {r["id"]: r for r in rep["results"]}
    assert sorted(rows) == list(range(12)) and all(r["state"] == "ok" for r in rows.values())
    by_victim = {t for t, r in rows.items() if r["worker"].startswith("victim/")}
    again = {t for t, r in rows.items() if r["attempts"] == 2}
    assert by_victim == {0, 1} and all(rows[t]["attempts"] == 1 for t in by_victim)
    assert again == {2, 3, 4, 5}  # the unfinished part of the split lease, and the next one
    assert all(rows[t]["worker"].startswith("survivor/") for t in again)
    assert rep["totals"]["retries"] == 4 and rep["totals"]["expired_leases"] >= 2
    runs = _notes(notes)
    assert sorted(runs[victim.pid]) == [0, 1, 2, 3]  # it started 2 and 3, never 4 and 5
    assert sorted(runs[survivor.pid]) == list(range(2, 12))  # 0 and 1 were not run again


def test_a_stopping_worker_gives_back_exactly_the_part_it_has_not_started(
    procs: Procs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while 2 and 3 hang and 4-5 wait: 4-5 go back at once, unspent (the lease
    splits again); 2 and 3 finish once the hold goes, within the drain."""
    notes = procs.tmp / "notes"
    hold = Path(f"{notes}.hold")
    hold.touch()
    monkeypatch.setenv("DISTPROC_NOTES", str(notes))
    procs.master()
    leaver = procs.worker("--name", "leaver", "--mode", "threads", "--concurrency", "2")
    procs.wait_workers(1)
    sub = procs.submit_bg("--kind", "distproc_kinds.chaos:noted", "--tasks", "12", "--batch",
                          "4", "--lease-seconds", "30", "--results")  # fmt: skip
    procs.wait_done(2)
    leaver.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while "released 2 unstarted tasks" not in procs.log_of(leaver):
        assert time.monotonic() < deadline, procs.log_of(leaver)
        time.sleep(0.05)
    hold.unlink()
    assert leaver.wait(timeout=20) == 0
    finisher = procs.worker("--name", "finisher", "--mode", "threads", "--concurrency", "2")
    out, _ = sub.communicate(timeout=60)
    rep = json.loads(out)
    assert sub.returncode == 0 and rep["totals"]["expired_leases"] == 0
    assert rep["totals"]["retries"] == 0  # released ids spent no attempt
    rows = {r["id"]: r for r in rep["results"]}
    assert {t for t, r in rows.items() if r["worker"].startswith("leaver/")} == {0, 1, 2, 3}
    assert all(r["attempts"] == 1 for r in rows.values())
    runs = _notes(notes)
    assert sorted(runs[leaver.pid]) == [0, 1, 2, 3]
    assert sorted(runs[finisher.pid]) == list(range(4, 12))
