"""A master killed (SIGKILL) mid-job and started again on its journal: the job goes on under
its id and ends exactly once, nothing lost. Real processes on 127.0.0.1; every kill loop is
bounded in count and time."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from distproc.broker import Broker
from distproc.client import broker, connect
from distproc.journal import open_journal
from harness import REPO, Procs

KILLS = 6  # per job
KILL_BUDGET = 45.0  # seconds of killing and restarting, at most


def _broker(procs: Procs) -> Any:
    return broker(connect(("127.0.0.1", procs.port), procs.key.encode(), timeout=20))


def _kill_at_random_points(
    procs: Procs, master: subprocess.Popen, journal: Path, seed: int, tasks: int
) -> tuple[subprocess.Popen, list[dict[str, Any] | None]]:
    """Kill the master ``KILLS`` times, each when the job's progress passes a random point
    (a fraction of ``tasks``, drawn in order), and start it again on ``journal``; returns the
    last master and what each restart resumed (None: nothing ran). Points in progress, not
    in time: a pause drawn in seconds let a fast run finish its job before the third kill."""
    rng = random.Random(seed)
    points = sorted(int(tasks * rng.uniform(0.02, 0.95)) for _ in range(KILLS))
    resumed = []
    deadline = time.monotonic() + KILL_BUDGET
    for point in points:
        client = _broker(procs)
        while time.monotonic() < deadline:
            job = client.status()["job"]
            if job is None or job["finished"] or job["done"] >= point:
                break
            time.sleep(0.005)
        master.send_signal(signal.SIGKILL)
        master.wait()
        master = procs.master("--journal", str(journal))
        resumed.append(_broker(procs).status()["journal"]["resumed"])
    return master, resumed


def _attach(procs: Procs, job_id: str, *args: str) -> tuple[int, dict[str, Any], str]:
    r = procs.cli("attach", "--master", procs.master_addr, "--job", job_id, "--progress",
                  "json", "--connect-timeout", "20", *args, timeout=120)  # fmt: skip
    assert r.stdout.strip(), r.stderr
    return r.returncode, json.loads(r.stdout), r.stderr


def _job_id(sub: subprocess.Popen) -> str:
    """The first line of a submit with ``--progress json``: the job's id."""
    assert sub.stderr is not None
    return json.loads(sub.stderr.readline())["job"]["id"]


def _submit(procs: Procs, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "distproc", "submit", "--master", procs.master_addr,
         "--progress", "json", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=procs.env(),
        cwd=REPO,
    )  # fmt: skip


def _exactly_once(rep: dict[str, Any], tasks: int) -> None:
    t = rep["totals"]
    assert rep["finished"] and rep["ok"], rep["summary"]
    assert (t["tasks"], t["ok"], t["failed"], t["dead"], t["lost"]) == (tasks, tasks, 0, 0, 0)
    checks = {c["name"]: c["status"] for c in rep["checks"]}
    assert checks == {"every_id_accounted": "pass", "values_correct": "pass", "all_ok": "pass"}
    assert sum(w["tasks"] for w in rep["workers"]) == tasks  # shares kept across restarts
    assert sum(rep["results_by_peer"].values()) == tasks


@pytest.mark.parametrize(
    ("kind", "tasks", "seed"),
    [("square", 1_500_000, 11), ("cpu", 6_000, 12)],
    ids=["square", "cpu, values kept"],
)
def test_a_master_killed_at_random_points_ends_its_job_exactly_once(
    procs: Procs, tmp_path: Path, kind: str, tasks: int, seed: int
) -> None:
    journal = tmp_path / "journal.db"
    master = procs.master("--journal", str(journal), "--results-dir", str(tmp_path))
    for name in ("w1", "w2"):
        procs.worker("--name", name)
    procs.wait_workers(2)
    spec = ["--kind", kind, "--tasks", str(tasks)]
    if kind == "cpu":
        spec += ["--size", "300", "--results-mode", "stream"]
    sub = _submit(procs, *spec)
    job_id = _job_id(sub)
    master, resumed = _kill_at_random_points(procs, master, journal, seed, tasks)
    assert sub.wait(timeout=30) == 1  # the submitter lost its master at the first kill
    mid_job = [r for r in resumed if r is not None]
    assert len(mid_job) >= KILLS - 1, resumed  # the kills landed while the job ran
    assert all(r["job"] == job_id and 0 <= r["done"] < tasks for r in mid_job)
    assert [r["done"] for r in mid_job] == sorted(r["done"] for r in mid_job)  # none undone

    code, rep, err = _attach(procs, job_id, *(["--results"] if kind == "cpu" else []))
    assert code == 0, err
    assert json.loads(err.splitlines()[0]) == {"job": {"id": job_id, "total": tasks}}
    _exactly_once(rep, tasks)
    if kind == "cpu":  # every value kept, once, right
        assert [r["id"] for r in rep["results"]] == list(range(tasks))
        assert {(r["state"], r["value"]) for r in rep["results"]} == {("ok", 62)}  # primes < 300


CHILD = textwrap.dedent(
    """
    import sys
    from distproc.journal import open_journal
    from distproc.states import OK

    j = open_journal(sys.argv[1])
    spec = {"kind": "square", "tasks": 1_000_000, "results": "stream"}
    j.commit(j.add(("job", "a-1", spec, None, 0.0)))
    first = [(0, 1000, OK, b"\\x01", None, "w", "", [t * t for t in range(1000)])]
    j.commit(j.add(("rows", "a-1", first, {"ok": 1000}, [], 0.0, [])))
    print("committed", flush=True)
    rows = [(1000 + 100 * i, 100, OK, b"\\x01", None, "w", "",
             [bytes([i % 256, k]) * 200 for k in range(100)]) for i in range(3000)]
    j.commit(j.add(("rows", "a-1", rows, {"ok": 301000}, [], 0.0, [])))  # some 60 MB
    print("big one committed", flush=True)
    """
)


@pytest.mark.parametrize("wal_mib", [2, 12, 30])
def test_a_kill_inside_the_journals_own_commit_leaves_the_last_one(
    tmp_path: Path, wal_mib: int
) -> None:
    """SIGKILL while a large transaction is being written (sqlite spills it to the WAL
    before its commit record): the journal opens as it was after the commit before."""
    path = tmp_path / "j.db"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE,
                             text=True, cwd=REPO)  # fmt: skip
    assert child.stdout is not None and child.stdout.readline() == "committed\n"
    wal = Path(str(path) + "-wal")
    deadline = time.monotonic() + 30
    while (wal.stat().st_size if wal.exists() else 0) < wal_mib * 2**20:
        assert child.poll() is None, "the big transaction ended before the kill"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.stdout.read() == ""  # killed before the big commit returned
    b = Broker(journal=open_journal(str(path)), results_dir=str(tmp_path))
    assert b.status()["journal"]["resumed"] == {"job": "a-1", "done": 1000, "total": 1_000_000}
    rows = [json.loads(line) for line in Path(b.jobs["a-1"].sink.path).read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(1000))


def test_classic_loses_only_what_its_workers_held_when_the_master_died(
    procs: Procs, tmp_path: Path
) -> None:
    """Classic has no leases: a restart keeps what was answered and serves again what nobody
    had taken; a task a worker held is lost (at-most-once), at most one per connection.
    A tutorial-style client that took a task and never answers holds one for sure."""
    journal = tmp_path / "journal.db"
    master = procs.master("--journal", str(journal))
    for name in ("w1", "w2"):
        procs.worker("--name", name, "--protocol", "classic")
    procs.wait_workers(2)
    sub = _submit(procs, "--protocol", "classic", "--tasks", "8000")
    job_id = _job_id(sub)
    holder = connect(("127.0.0.1", procs.port), procs.key.encode(), timeout=20)
    tasks = holder.get_task_queue()
    held = tasks.get(timeout=10)  # and never answered: its connection stays open
    b = broker(holder)  # the same connection (connect() would close it)
    deadline = time.monotonic() + 30
    while b.progress(job_id)["done"] < 1000:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    master.send_signal(signal.SIGKILL)
    master.wait()
    procs.master("--journal", str(journal))
    resumed = _broker(procs).status()["journal"]["resumed"]
    assert resumed["job"] == job_id and resumed["done"] < 8000
    code, rep, _ = _attach(procs, job_id)
    t = rep["totals"]
    assert rep["finished"] and t["ok"] + t["lost"] == 8000 and t["dead"] == 0
    assert 1 <= t["lost"] <= 3 and code == 3  # the holder's task, and one per worker at most
    assert f"(payload {held})" in rep["summary"]
    assert all("master restarted" in x["error"] for x in rep["lost"])
    assert {c["name"]: c["status"] for c in rep["checks"]}["every_id_accounted"] == "pass"


# -- the command line ----------------------------------------------------------------------


def test_a_journal_the_master_cannot_use_is_a_usage_error(procs: Procs, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    foreign.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    for path, fragment in ((tmp_path / "nowhere" / "j.db", "does not exist"),
                           (foreign, "refusing to guess")):  # fmt: skip
        r = procs.cli("master", "--port", str(procs.port), "--journal", str(path), timeout=30)
        assert r.returncode == 2, r.stderr
        assert fragment in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_attach_to_an_unknown_job_or_no_master(procs: Procs, tmp_path: Path) -> None:
    r = procs.cli("attach", "--master", procs.master_addr, "--job", "x-1",
                  "--connect-timeout", "1")  # fmt: skip
    assert r.returncode == 1 and "unreachable" in r.stderr and "Traceback" not in r.stderr
    procs.master("--journal", str(tmp_path / "j.db"))
    r = procs.cli("attach", "--master", procs.master_addr, "--job", "x-1")
    assert r.returncode == 4 and r.stderr.strip() == "distproc attach: no such job: x-1"
    assert r.stdout == ""


def test_attach_follows_a_job_as_submit_does(procs: Procs, tmp_path: Path) -> None:
    procs.master()
    sub = _submit(procs, "--tasks", "200")  # no worker yet: it waits
    job_id = _job_id(sub)
    procs.worker("--name", "w1")
    code, rep, err = _attach(procs, job_id)
    assert code == 0 and rep["job"]["id"] == job_id and rep["totals"]["ok"] == 200
    assert json.loads(err.splitlines()[-1])["progress"]["finished"]
    assert sub.wait(timeout=30) == 0
    off = procs.status()["journal"]  # no journal: the same keys, nothing in them
    assert off["path"] is None and off["replayed_jobs"] == 0 and off["commits"] == 0
    assert set(off) == set(Broker(journal=open_journal(str(tmp_path / "j.db"))).feed.status())
