"""The verdict of a chaos run, judged on real reports (the queue program's ``Ledger`` and
``report.build``): a lost task exits 3, a run that injected nothing is not a pass."""

from __future__ import annotations

from distproc import kinds
from distproc.ledger import Ledger
from distproc.report import Report, build
from distproc.spec import make_spec

from orchestrate.chaos.recovery import Recovery
from orchestrate.chaos.show import print_verdicts, recovered
from orchestrate.chaos.verdict import Verdict, exit_code, judge, lost_tasks
from orchestrate.ui import make_console


class _Rec:
    def __init__(self, wid: str) -> None:
        self.wid, self.identity = wid, {"name": wid}


def _report(protocol: str = "leased", tasks: int = 20, lose: int = 0, finish: bool = True,
            late: int = 0) -> Report:  # fmt: skip
    """A job of ``tasks`` square tasks run by one worker, as a real ledger records it: under
    classic, ``lose`` tasks taken by a connection that closed; ``late`` results counted
    again after the job ended; ``finish=False`` stops halfway."""
    spec = make_spec({"protocol": protocol, "kind": "square", "tasks": tasks, "batch": tasks})
    payloads = kinds.make_payloads("square", tasks, spec.size, spec.seed)
    job = Ledger("j1", spec, payloads)
    n = tasks if finish else tasks // 2
    if protocol == "classic":
        for _ in range(n):
            job.take()
        for t in range(lose):
            job.lose(t, "lost: its connection closed", "w", "198.18.9.9")
        job.accept(0, "198.18.9.9", [(t, payloads[t] ** 2) for t in range(lose, n)])
    else:
        lease = job.lease(0, n)
        assert lease is not None
        job.settle(0, "198.18.9.9", [(lease.id, [(0, n)], [p * p for p in payloads[:n]], [])])
        if late:
            job.accept(0, "198.18.9.9", [(t, payloads[t] ** 2) for t in range(late)])
    return build(job, [_Rec("w")], {"netns": "net:[1]"})


def _verdict() -> Verdict:
    return Verdict("kill-worker", "leased", "c-alpha-0", injected_at=2.1, healed_at=5.2)


PASSING_CHECKS = [{"name": "every_worker_contributed", "status": "pass", "ok": True,
                   "evidence": "w 20"}]  # fmt: skip


def test_every_task_once_none_lost_is_a_pass() -> None:
    v = judge(_verdict(), _report(late=3), PASSING_CHECKS, injected=True)
    assert (v.status, v.exit_code, v.lost, v.duplicates, v.ok) == ("pass", 0, 0, 3, 20)
    assert "none lost" in v.reason


def test_a_task_lost_under_classic_fails_with_exit_3() -> None:
    rep = _report("classic", lose=1)
    assert rep.totals.lost == 1
    v = judge(_verdict(), rep, PASSING_CHECKS, injected=True)
    assert (v.status, v.exit_code, v.lost, v.ok) == ("fail", 3, 1, 19)
    assert "1 lost" in v.reason


def test_a_task_in_no_final_state_counts_as_lost() -> None:
    """A job that ended with tasks never answered (a report read before the end, a cancel
    that did not bury them): each is lost to the verdict, whatever the report calls it."""
    rep = _report(finish=False)
    assert rep.totals.lost == 0 and lost_tasks(rep) == 10
    v = judge(_verdict(), rep, PASSING_CHECKS, injected=True)
    assert (v.status, v.exit_code, v.lost) == ("fail", 3, 10)


def test_a_result_counted_twice_fails() -> None:
    """The ledger never double counts; if a master ever said so, the verdict would fail."""
    data = _report().to_dict()
    data["totals"]["ok"] += 1
    for c in data["checks"]:
        if c["name"] == "every_id_accounted":
            c.update(status="fail", ok=False)
    v = judge(_verdict(), Report.from_dict(data), PASSING_CHECKS, injected=True)
    assert v.status == "fail" and "counted twice" in v.reason and "every_id_accounted" in v.reason


def test_a_failed_check_of_the_job_fails_the_run() -> None:
    checks = [{"name": "results_crossed_the_network", "status": "fail", "ok": False,
               "evidence": "198.18.9.9 owned by no container"}]  # fmt: skip
    v = judge(_verdict(), _report(), checks, injected=True)
    assert v.status == "fail" and "results_crossed_the_network" in v.reason


def test_a_run_that_injected_nothing_is_skipped_not_passed() -> None:
    v = Verdict("kill-worker", "leased", "c-alpha-0", reason="the job ended before the fault")
    v = judge(v, _report(), PASSING_CHECKS, injected=False)
    assert (v.status, v.exit_code) == ("skipped", 1)
    assert exit_code([v]) == 1


def test_the_exit_code_of_several_runs() -> None:
    ok = judge(_verdict(), _report(), PASSING_CHECKS, injected=True)
    lost = judge(_verdict(), _report("classic", lose=1), PASSING_CHECKS, injected=True)
    error = Verdict("blackhole", "leased", "c-alpha-0", reason="the job did not run")
    assert exit_code([ok]) == 0
    assert exit_code([ok, error]) == 1
    assert exit_code([error, lost, ok]) == 3  # a loss says more than an error
    assert exit_code([]) == 1


def test_the_table_names_what_was_lost_and_when(capsys: object) -> None:
    lost = judge(_verdict(), _report("classic", lose=1), PASSING_CHECKS, injected=True)
    lost.protocol = "classic"
    lost.recovery = Recovery(1000.0, 100.0, True, 3.96, "back to half of 1000/s")
    ok = judge(_verdict(), _report(), PASSING_CHECKS, injected=True)
    ok.recovery = Recovery(1000.0, 800.0, False, 0.0, "never below half")
    console = make_console(live=False)
    with console.capture() as cap:
        print_verdicts(console, [ok, lost], "chaos on 'c'", "c")
    out = cap.get()
    rows = [line for line in out.splitlines() if "kill-worker" in line and "│" in line]
    assert len(rows) == 2
    assert "alpha-0" in rows[0] and "c-alpha-0" not in rows[0]
    assert rows[1].split("│")[11].strip() == "1" and "FAIL" in rows[1]  # lost
    assert rows[1].split("│")[12].strip() == "4.0s" and rows[0].split("│")[12].strip() == "0.0s"
    assert "FAIL kill-worker (classic): 1 lost" in out
    assert recovered(Verdict("x", "leased", "t")) == "-"
    assert lost.as_json()["tasks"] == {"submitted": 20, "ok": 19, "failed": 0, "dead": 0,
                                       "duplicates": 0, "lost": 1}  # fmt: skip
