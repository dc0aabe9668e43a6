"""Chaos events reach the dashboard's chart: ``orchestrate chaos`` appends marks to a file
beside the cluster's key, and the dashboard's poller reads what is new at each poll."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_backend import FakeBackend

from orchestrate.chaos import marks
from orchestrate.chaos.marks import MarksTail, append_mark, marks_path
from orchestrate.cluster import ClusterRun
from orchestrate.dashboard.poller import Poller
from orchestrate.events import NullEvents
from orchestrate.model import load_cluster_text

FILE = """\
name: m
networks: [{name: net, subnet: 198.18.150.0/28}]
master: {networks: [net]}
workers: [{name: alpha, count: 1, networks: [net]}]
"""


def test_the_tail_reads_what_was_appended_since(tmp_path: Path) -> None:
    path = tmp_path / "marks.jsonl"
    append_mark(path, "chaos", "before the dashboard", t=1.0)
    tail = MarksTail(path)  # from the end: earlier runs are not shown
    assert tail.new() == []
    append_mark(path, "chaos", "killed m-alpha-0", t=2.0)
    with path.open("a") as f:
        f.write("not json\n")
        f.write('{"t": 3, "kind": "chaos", "lab')  # a line being written: not yet
    assert tail.new() == [{"t": 2.0, "kind": "chaos", "label": "killed m-alpha-0"}]
    with path.open("a") as f:
        f.write('el": "half"}\n')
    assert tail.new() == [{"t": 3.0, "kind": "chaos", "label": "half"}]
    assert tail.new() == []


def test_the_file_starts_again_past_its_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(marks, "MAX_BYTES", 200)
    path = tmp_path / "marks.jsonl"
    tail = MarksTail(path)
    for i in range(5):
        append_mark(path, "chaos", f"mark {i} " + "x" * 40, t=float(i))
    assert path.stat().st_size < 400
    seen = [m["label"][:6] for m in tail.new()]
    assert seen[-1] == "mark 4" and len(seen) < 5  # it started again: the tail did too


def test_the_dashboard_shows_a_chaos_run_as_marks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTPROC_STATE_DIR", str(tmp_path / "state"))
    cluster = load_cluster_text(FILE)
    backend = FakeBackend()
    assert ClusterRun(cluster, backend, NullEvents()).up(run_job=False).ok
    poller = Poller(cluster, backend, "m.yaml")
    append_mark(marks_path("m"), "chaos", "kill-worker: killed m-alpha-0 holding 12 tasks", 5.0)
    poller.poll_once()
    events = json.loads(poller.latest()[1])["events"]
    assert {
        "t": 5.0,
        "kind": "chaos",
        "label": "kill-worker: killed m-alpha-0 holding 12 tasks",
    } in (events)
