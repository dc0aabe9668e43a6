"""The master's own checks fail on the evidence they exist for."""

from __future__ import annotations

import pytest
from distproc.ledger import Ledger
from distproc.report import STATUSES, Check, Report, build, checks
from distproc.spec import JobSpec


def _job(kind: str = "square", n: int = 4) -> Ledger:
    spec = JobSpec(kind=kind, tasks=n, batch=n)
    job = Ledger("j", spec, list(range(n)))
    job.lease(0, n)
    return job


def _by_name(job: Ledger) -> dict[str, Check]:
    return {c.name: c for c in checks(job)}


def test_all_pass_on_right_values() -> None:
    job = _job()
    job.accept(0, "10.0.0.1", [(t, t * t) for t in range(4)])
    assert all(c.status == "pass" for c in checks(job))


def test_values_correct_fails_on_a_wrong_value() -> None:
    job = _job()
    job.accept(0, "10.0.0.1", [(0, 0), (1, 1), (2, 5), (3, 9)])  # 2*2 is not 5
    c = _by_name(job)["values_correct"]
    assert not c.ok and c.status == "fail" and "wrong: [2]" in c.evidence


def test_every_id_accounted_fails_with_unfinished_tasks() -> None:
    job = _job()
    job.accept(0, "10.0.0.1", [(0, 0)])
    c = _by_name(job)["every_id_accounted"]
    assert not c.ok and "unfinished: [1, 2, 3]" in c.evidence


def test_report_totals_and_peers() -> None:
    job = _job()
    job.accept(0, "10.0.0.1", [(0, 0), (1, 1)])
    job.accept(0, "10.0.0.2", [(2, 4), (3, 9), (3, 9)])

    class Rec:
        wid, identity = "w", {"name": "w"}

    rep = build(job, [Rec()], {"netns": "net:[1]"})
    assert rep.ok and rep.totals.duplicates == 1 and rep.totals.lost == 0
    assert rep.results_by_peer == {"10.0.0.1": 2, "10.0.0.2": 2}
    again = Report.from_dict(rep.to_dict())  # the same keys, whatever the protocol
    assert again == rep and "lost" in rep.to_dict()["totals"]


def test_custom_kind_values_are_skipped_not_passed() -> None:
    job = _job(kind="distproc_kinds.chaos:poison")
    job.accept(0, "10.0.0.1", [(t, "anything") for t in range(4)])
    c = _by_name(job)["values_correct"]
    assert c.status == "skipped" and c.ok and "values not checked" in c.evidence


def test_summary_names_the_lost_task_and_who_held_it() -> None:
    spec = JobSpec(protocol="classic", tasks=2)
    job = Ledger("j", spec, range(2))
    tid = job.take()
    job.lose(tid, "lost: its connection closed", "classic@10.0.0.9", "10.0.0.9")

    class Rec:
        wid, identity = "w", {}

    rep = build(job, [Rec()], {})
    assert rep.totals.lost == 1 and rep.lost[0].worker == "classic@10.0.0.9"
    assert "lost 1: task 0" in rep.summary and "classic@10.0.0.9" in rep.summary


def test_a_check_refuses_an_unknown_status_and_a_contradicting_ok() -> None:
    """``Check`` is the one shape, for the master and orchestrate: a typo is an error, and
    a report whose ``ok`` disagrees with its ``status`` is not ours to believe."""
    assert [Check("x", s, "e").ok for s in STATUSES] == [True, False, True]
    assert Check("x", "skipped", "e").as_dict() == {
        "name": "x", "status": "skipped", "ok": True, "evidence": "e"
    }  # fmt: skip
    with pytest.raises(ValueError, match="status must be one of"):
        Check("x", "passed", "e")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="contradicts"):
        Check("x", "fail", "e", ok=True)
