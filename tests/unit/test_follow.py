"""``orchestrate.follow``: a job followed through a master killed (SIGKILL) and started again,
with real master and worker processes on 127.0.0.1; the master's commands run as the
backend's ``control`` runs them in a container (``python -m distproc CMD --master ...``)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from distproc.broker import JOB_ID
from harness import REPO, Procs

from orchestrate.backends.base import EngineError, ExecResult, with_master
from orchestrate.events import NullEvents
from orchestrate.follow import Followed, JobFollower, JobLost
from orchestrate.model import Cluster

CLUSTER = Cluster.model_validate(
    {
        "name": "follow",
        "networks": [{"name": "n", "subnet": "198.18.236.0/24"}],
        "master": {"networks": ["n"]},
        "workers": [{"name": "w", "count": 2, "networks": ["n"]}],
    }
)
JOB = ["--kind", "square", "--tasks", "3000000"]


class MasterOnLoopback:
    """The one method ``JobFollower`` asks of a backend, ``control``, against a master
    process on 127.0.0.1 (an ``EngineError`` when none runs, as the backends say)."""

    def __init__(self, procs: Procs) -> None:
        self.procs = procs
        self.master: subprocess.Popen | None = None

    def control(
        self, cluster_name: str, argv: list[str], on_line: Callable[[str], None] | None = None
    ) -> ExecResult:
        if self.master is None or self.master.poll() is not None:
            raise EngineError(f"cluster {cluster_name!r} has no running master")
        full = [sys.executable, "-m", "distproc", *with_master(argv, self.procs.master_addr)]
        with tempfile.TemporaryFile() as out:
            p = subprocess.Popen(full, stdout=out, stderr=subprocess.PIPE, text=True,
                                 env=self.procs.env(), cwd=REPO)  # fmt: skip
            assert p.stderr is not None
            err = []
            for line in p.stderr:
                err.append(line)
                if on_line is not None:
                    on_line(line.rstrip("\n"))
            code = p.wait(timeout=120)
            out.seek(0)
            return ExecResult(code, out.read().decode(), "".join(err))


def _start(procs: Procs, backend: MasterOnLoopback, *args: str) -> None:
    backend.master = procs.master(*args)


def _follow(
    backend: MasterOnLoopback, lines: list[str], back_wait: float = 60.0
) -> tuple[threading.Thread, dict[str, Any]]:
    """The follower in a thread (as ``ClusterRun.job`` runs it), its outcome in the dict."""
    result: dict[str, Any] = {}
    follower = JobFollower(CLUSTER, backend, NullEvents(), lines.append, back_wait)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result["followed"] = follower.run(["submit", "--progress", "json", *JOB], 120)
        except JobLost as exc:
            result["lost"] = str(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


def _progress(lines: list[str]) -> int:
    done = [json.loads(x)["progress"]["done"] for x in lines if x.startswith('{"progress"')]
    return done[-1] if done else 0


def _kill_when(backend: MasterOnLoopback, lines: list[str], done: int) -> None:
    deadline = time.monotonic() + 30
    while _progress(lines) < done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _progress(lines) >= done, "the job never got that far"
    assert backend.master is not None
    backend.master.send_signal(signal.SIGKILL)
    backend.master.wait()


@pytest.mark.parametrize("kills", [1, 2])
def test_a_job_followed_through_restarts_of_its_master_ends_exactly_once(
    procs: Procs, tmp_path: Path, kills: int
) -> None:
    journal = str(tmp_path / "journal.sqlite")
    backend = MasterOnLoopback(procs)
    _start(procs, backend, "--journal", journal)
    for name in ("a", "b"):
        procs.worker("--name", name)
    procs.wait_workers(2)
    lines: list[str] = []
    t, result = _follow(backend, lines)
    for k in range(kills):
        _kill_when(backend, lines, 300_000 * (k + 1))
        time.sleep(1.0)  # down a while: the follower waits
        _start(procs, backend, "--journal", journal)
    t.join(120)
    assert not t.is_alive() and "lost" not in result, result
    followed: Followed = result["followed"]
    assert followed.result.exit_code == 0, followed.result.stderr[-500:]
    assert len(followed.restarts) == kills
    for said in followed.restarts:
        assert said.startswith("master restarted at ")
        assert f"resumed job {followed.job_id} from the journal: " in said
    rep = json.loads(followed.result.stdout)
    t_ = rep["totals"]
    assert rep["job"]["id"] == followed.job_id
    assert JOB_ID.fullmatch(followed.job_id), "the id `job --attach` takes, as the master makes it"
    assert (t_["tasks"], t_["ok"], t_["lost"], t_["failed"]) == (3_000_000, 3_000_000, 0, 0)
    assert {c["name"]: c["status"] for c in rep["checks"]}["every_id_accounted"] == "pass"


def test_a_master_without_a_journal_is_said_to_have_lost_the_job(procs: Procs) -> None:
    backend = MasterOnLoopback(procs)
    _start(procs, backend)
    procs.worker("--name", "a")
    procs.wait_workers(1)
    lines: list[str] = []
    t, result = _follow(backend, lines)
    _kill_when(backend, lines, 100_000)
    _start(procs, backend)
    t.join(60)
    assert not t.is_alive()
    assert "keeps no journal (master.journal: false)" in result["lost"], result


def test_a_master_that_does_not_come_back_is_waited_for_a_bounded_time(
    procs: Procs, tmp_path: Path
) -> None:
    backend = MasterOnLoopback(procs)
    _start(procs, backend, "--journal", str(tmp_path / "j.sqlite"))
    procs.worker("--name", "a")
    procs.wait_workers(1)
    lines: list[str] = []
    t, result = _follow(backend, lines, back_wait=2.0)
    _kill_when(backend, lines, 100_000)
    t.join(30)
    assert not t.is_alive()
    assert "did not come back within 2s" in result["lost"]
    assert "`orchestrate job --attach " in result["lost"]


def test_a_refused_submit_is_returned_as_it_is(procs: Procs) -> None:
    """No job id was printed: nothing to follow, the caller says why it did not run."""
    backend = MasterOnLoopback(procs)
    _start(procs, backend)
    follower = JobFollower(CLUSTER, backend, NullEvents(), lambda _: None)  # type: ignore[arg-type]
    out = follower.run(["submit", "--progress", "json", "--kind", "square", "--tasks", "-5"], 30)
    assert out.job_id is None and out.restarts == []
    assert out.result.exit_code not in (0, 3)


@pytest.mark.parametrize(
    ("job_id", "said"),
    [("-x", "refused"), ("f" * 5000, "refused"), ("", "while the master kept running")],
)
def test_an_attach_the_running_master_refuses_is_said_at_once_not_followed_as_a_restart(
    procs: Procs, job_id: str, said: str
) -> None:
    """A refusal (bad arguments, exit 2; an error while the same master runs, here "no job
    has run yet", exit 1) is not a lost master: never ``MAX_ATTACHES`` false restarts."""
    backend = MasterOnLoopback(procs)
    _start(procs, backend)
    follower = JobFollower(CLUSTER, backend, NullEvents(), lambda _: None)  # type: ignore[arg-type]
    with pytest.raises(JobLost, match=said) as lost:
        follower.attach(job_id, 30)
    assert "restarted 20 times" not in str(lost.value)
    assert len(str(lost.value)) < 1000  # the id is not echoed whole
