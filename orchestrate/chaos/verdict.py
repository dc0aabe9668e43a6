"""The verdict of a chaos run: what happened to every task, when the fault hit, how long the
cluster took to recover, and whether anything was lost.

``Verdict.status``:

- ``fail``: a task was lost (the report's ``lost``, or a task left in no final state), a
  result was counted twice (the master's ``every_id_accounted`` failed), or another check
  of the job failed; ``orchestrate chaos`` exits 3;
- ``skipped``: no fault was injected (the job ended first): nothing was tested, so it is not
  a pass; exit 1;
- ``error``: the run itself failed (the job did not run, the fault could not be healed);
  exit 1;
- ``pass``: the fault was injected, and every task was accounted for once, none lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from distproc.report import Report

from .recovery import Recovery

Status = Literal["pass", "fail", "skipped", "error"]
#: the master's own checks that judge the accounting itself (the rest are the cluster's)
ACCOUNTING = ("every_id_accounted", "values_correct")


@dataclass
class Verdict:
    """One scenario's run (see the module docstring). Times are seconds after the job
    started (its first progress line); None where it did not happen."""

    scenario: str
    protocol: str
    target: str
    status: Status = "error"
    reason: str = ""
    tasks: int = 0
    ok: int = 0
    failed: int = 0
    dead: int = 0
    duplicates: int = 0
    lost: int = 0
    injected_at: float | None = None
    healed_at: float | None = None
    job_seconds: float | None = None
    recovery: Recovery | None = None
    #: what was done, in order, with its time: "2.03s killed e2e-chaos-big-0 holding 12 tasks"
    steps: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        return {"pass": 0, "fail": 3}.get(self.status, 1)

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "protocol": self.protocol,
            "target": self.target,
            "status": self.status,
            "reason": self.reason,
            "tasks": {
                "submitted": self.tasks,
                "ok": self.ok,
                "failed": self.failed,
                "dead": self.dead,
                "duplicates": self.duplicates,
                "lost": self.lost,
            },
            "injected_at": _round(self.injected_at),
            "healed_at": _round(self.healed_at),
            "job_seconds": _round(self.job_seconds),
            "recovery": self.recovery.as_json() if self.recovery else None,
            "options": self.options,
            "steps": self.steps,
            "checks": self.checks,
            "report": self.report,
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def lost_tasks(report: Report) -> int:
    """Tasks lost: counted lost by the master, or in no final state when the job ended."""
    t = report.totals
    return t.lost + max(0, t.tasks - (t.ok + t.failed + t.dead + t.lost))


def judge(v: Verdict, report: Report, checks: list[dict[str, Any]], injected: bool) -> Verdict:
    """Fill ``v`` from the job's report and checks, and decide its status (module docstring)."""
    t = report.totals
    v.tasks, v.ok, v.failed, v.dead = t.tasks, t.ok, t.failed, t.dead
    v.duplicates, v.lost = t.duplicates, lost_tasks(report)
    v.checks = checks
    v.report = report.to_dict()
    wrong = [c.name for c in report.checks if c.name in ACCOUNTING and not c.ok]
    failed = [c["name"] for c in checks if c["status"] == "fail"]
    problems = []
    if v.lost:
        problems.append(f"{v.lost} lost")
    if t.ok > t.tasks:
        problems.append(f"{t.ok} ok of {t.tasks} tasks: counted twice")
    problems += [f"the master's {name} failed" for name in wrong]
    if problems or failed:
        v.status = "fail"
        v.reason = "; ".join(problems + ([f"failed checks: {', '.join(failed)}"] if failed else []))
    elif not injected:
        v.status = "skipped"
        v.reason = v.reason or "no fault was injected: nothing was tested"
    else:
        v.status = "pass"
        v.reason = f"every task accounted for once, none lost ({report.guarantee})"
    return v


def exit_code(verdicts: list[Verdict]) -> int:
    """3 if any run lost a task (or failed a check); else 1 if any was not a pass; else 0."""
    codes = {v.exit_code for v in verdicts}
    return 3 if 3 in codes else (1 if codes - {0} or not verdicts else 0)
