"""The master's own checks fail on the evidence they exist for."""

from __future__ import annotations

from distproc.ledger import Ledger
from distproc.report import build, checks
from distproc.spec import JobSpec


def _job(kind: str = "square", n: int = 4) -> Ledger:
    spec = JobSpec(kind=kind, tasks=n, batch=n)
    job = Ledger("j", spec, list(range(n)))
    job.lease(0, n)
    return job


def _by_name(job: Ledger) -> dict[str, dict]:
    return {c["name"]: c for c in checks(job)}


def test_all_pass_on_right_values() -> None:
    job = _job()
    job.accept(0, "10.0.0.1", [(t, t * t) for t in range(4)])
    assert all(c["ok"] for c in checks(job))


def test_values_correct_fails_on_a_wrong_value() -> None:
    job = _job()
    job.accept(0, "10.0.0.1", [(0, 0), (1, 1), (2, 5), (3, 9)])  # 2*2 is not 5
    c = _by_name(job)["values_correct"]
    assert not c["ok"] and "wrong: [2]" in c["evidence"]


def test_every_id_accounted_fails_with_unfinished_tasks() -> None:
    job = _job()
    job.accept(0, "10.0.0.1", [(0, 0)])
    c = _by_name(job)["every_id_accounted"]
    assert not c["ok"] and "unfinished: [1, 2, 3]" in c["evidence"]


def test_report_totals_and_peers() -> None:
    job = _job()
    job.accept(0, "10.0.0.1", [(0, 0), (1, 1)])
    job.accept(0, "10.0.0.2", [(2, 4), (3, 9), (3, 9)])

    class Rec:
        wid, identity = "w", {"name": "w"}

    rep = build(job, [Rec()], {"netns": "net:[1]"})  # type: ignore[list-item]
    assert rep["ok"] and rep["totals"]["duplicates"] == 1
    assert rep["results_by_peer"] == {"10.0.0.1": 2, "10.0.0.2": 2}
