"""A job whose tasks did not all end ok names them in the human output (stderr): the
report's summary, then lost, dead and failed tasks one whole line each, with who held them."""

from __future__ import annotations

import argparse
import re
from types import SimpleNamespace
from typing import Any

import pytest
from distproc.ledger import Ledger
from distproc.spec import JobSpec
from test_e2e_checks import EXPECTED, WORKERS, _through_json, inventory

from orchestrate import checks
from orchestrate.cli import _finish
from orchestrate.cluster import Outcome
from orchestrate.events import NullEvents
from orchestrate.ui import make_console, print_tasks_not_ok

LOST_WHY = "lost: classic@198.18.1.3 took it and its connection closed without a result"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _classic_job_with_a_lost_and_dead_tasks() -> Ledger:
    """Task 0 ok, task 1 lost with its taker's connection, tasks 2-3 dead (cancelled)."""
    job = Ledger("j", JobSpec(protocol="classic", tasks=4), list(range(40, 44)))
    for _ in range(3):
        job.take()
    job.accept(0, "198.18.1.3", [(0, 1600)])
    job.lose(1, LOST_WHY, "classic@198.18.1.3", "198.18.1.3")
    job.stop("cancelled: the job ran past --timeout")
    return job


def _finish_job(outcome: Outcome, monkeypatch: pytest.MonkeyPatch, tmp: Any) -> int:
    """``orchestrate job``'s last step, on a runner that has no engine behind it."""
    monkeypatch.setenv("DISTPROC_STATE_DIR", str(tmp))
    runner = SimpleNamespace(
        events=NullEvents(),
        cluster=SimpleNamespace(name="c"),
        backend=SimpleNamespace(save_logs=lambda name, directory: []),
    )
    return _finish(argparse.Namespace(json=False), runner, outcome, "job")  # type: ignore[arg-type]


def test_job_output_names_the_lost_task_and_the_dead_ones(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    rep = _through_json(_classic_job_with_a_lost_and_dead_tasks())
    inv = inventory()
    outcome = Outcome(checks.job_checks(rep, inv, EXPECTED), rep, inv)
    assert _finish_job(outcome, monkeypatch, tmp_path) == 3
    lines = capsys.readouterr().err.splitlines()  # not a terminal: plain lines, as in CI
    assert f"tasks not ok: {rep.summary}" in lines
    assert "task 1 (payload 41) held by classic@198.18.1.3" in rep.summary
    assert f"  lost: task 1 held by classic@198.18.1.3 (c-a-0), 1 attempt: {LOST_WHY}" in lines, (
        lines
    )
    assert "  dead: task 2, 1 attempt: cancelled: the job ran past --timeout" in lines
    assert "  dead: task 3, 0 attempts: cancelled: the job ran past --timeout" in lines
    checked = next(x for x in lines if "tasks_answered_once" in x)
    assert "lost 1, dead 2" in checked  # both counts, whatever the protocol


def test_an_all_ok_job_names_no_task(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    from test_e2e_checks import report

    rep = report()
    outcome = Outcome(checks.job_checks(rep, inventory(), EXPECTED), rep, inventory())
    assert _finish_job(outcome, monkeypatch, tmp_path) == 0
    err = capsys.readouterr().err
    assert "tasks not ok" not in err and "dead:" not in err


def test_on_a_narrow_terminal_an_entry_is_never_wrapped_mid_entry(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dead task with a worker's multi-line traceback, on a 40-column terminal: one line,
    the traceback folded, and the extra dead letters counted, not listed."""
    monkeypatch.setenv("COLUMNS", "40")
    job = Ledger(
        "j",
        JobSpec(tasks=5, batch=5, max_attempts=1),
        list(range(5)),
        worker_name=lambda i: WORKERS[i].wid,
    )
    job.lease(1, 5)
    error = "Traceback (most recent call last):\n  File x\nZeroDivisionError: division by zero"
    job.accept(1, "198.18.2.3", [], [(t, error) for t in range(5)])
    rep = _through_json(job)
    print_tasks_not_ok(make_console(live=True), rep, inventory())
    lines = ANSI.sub("", capsys.readouterr().err).splitlines()
    entry = (
        "  dead: task 0 held by b at 198.18.2.3 (c-b-0), 1 attempt: Traceback (most recent "
        "call last): File x ZeroDivisionError: division by zero"
    )
    assert lines[1] == entry, lines
    assert lines[0].startswith("tasks not ok: 0/5 tasks ok; dead 5: task 0")
    assert lines[4:] == ["  dead: 2 more in the report (--json)"]
