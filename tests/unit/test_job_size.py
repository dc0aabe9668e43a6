"""``kind`` and ``size`` together: each kind's own default size, and a warning for a long job.

The issue's case: the README suggested ``kind: io`` with ``mode: threads`` and
``concurrency: 32`` on the default cluster (4 workers), and the file's ``size: 20000`` (meant
for ``cpu``) made each io task wait 20 s: 400 tasks took 80 s, with no warning.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from distproc.kinds import BUILTIN, DEFAULT_SIZE
from harness import REPO, Procs

from orchestrate.cli import main
from orchestrate.model import load_cluster_text
from orchestrate.model.checks import about, concurrent_slots, job_seconds
from orchestrate.model.errors import Problem

CLUSTER_YAML = REPO / "cluster.yaml"


def _cluster_text(kind: str, size: str, *, mode: str = "threads", concurrency: str = "32") -> str:
    """The repository's cluster.yaml with the README's suggested edit (kind, mode, concurrency)
    and a size, as a newcomer makes it."""
    text = CLUSTER_YAML.read_text()
    text = re.sub(r"(?m)^  kind: \S+$", f"  kind: {kind}", text)
    text = re.sub(r"(?m)^  size: \S+$", f"  size: {size}", text)
    text = re.sub(r"(?m)^    mode: auto$", f"    mode: {mode}", text)
    return re.sub(r"(?m)^    concurrency: auto$", f"    concurrency: {concurrency}", text)


def _warnings(text: str) -> list[Problem]:
    warnings: list[Problem] = []
    load_cluster_text(text, "cluster.yaml", warnings)
    return warnings


def test_the_issues_io_job_warns_about_80_s_at_the_size() -> None:
    text = _cluster_text("io", "20000")
    [warning] = _warnings(text)
    assert warning.message == (
        "job.size: 400 io tasks of 20000 ms on 128 concurrent slots take about 80 s; "
        "set job.size (ms per io task) or more concurrency"
    )
    line = text.splitlines()[warning.line - 1]
    assert line[warning.col - 1 :].startswith("20000"), line  # file:line:col of the value


@pytest.mark.parametrize("mode", ["auto", "threads"])
def test_auto_concurrency_is_the_workers_32_threads(mode: str) -> None:
    """Without ``concurrency`` an io worker runs 32 threads, as ``--threads`` defaults."""
    [warning] = _warnings(_cluster_text("io", "20000", mode=mode, concurrency="auto"))
    assert "on 128 concurrent slots take about 80 s" in warning.message


def test_validate_prints_the_warning_with_its_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "io.yaml"
    path.write_text(_cluster_text("io", "20000"))
    assert main(["validate", "-f", str(path)]) == 0  # a warning, not an error
    err = capsys.readouterr().err
    assert re.search(rf"{re.escape(str(path))}:\d+:\d+: warning: job.size: .* about 80 s", err)


@pytest.mark.parametrize(
    ("kind", "size"),
    [("io", "null"), ("io", "100"), ("cpu", "20000"), ("square", "20000"), ("cpu", "null")],
)
def test_a_short_or_unestimated_job_does_not_warn(kind: str, size: str) -> None:
    """400 io tasks of 10 ms (the default) or 100 ms are short; cpu is not estimated."""
    assert _warnings(_cluster_text(kind, size)) == []


def test_the_default_cluster_file_validates_without_warnings() -> None:
    assert _warnings(CLUSTER_YAML.read_text()) == []


def test_a_long_job_at_the_default_size_points_at_tasks() -> None:
    """No size in the file: the warning names the io default, at ``job.tasks``."""
    text = _cluster_text("io", "null").replace("  tasks: 400\n", "  tasks: 1000000\n")
    [warning] = _warnings(text)
    assert warning.message.startswith(
        f"job.tasks: 1000000 io tasks of {DEFAULT_SIZE['io']} ms on 128 concurrent slots"
    )


def test_the_slots_follow_each_groups_mode_and_reachability() -> None:
    text = _cluster_text("io", "20000")
    cluster = load_cluster_text(text)
    assert concurrent_slots(cluster, "io") == 2 * 32 + 2 * 32
    # processes: ceil(cpus) each (0.5 -> 1); inline: one at a time; an explicit concurrency
    cluster = load_cluster_text(_cluster_text("io", "20000", mode="processes", concurrency="auto"))
    assert concurrent_slots(cluster, "io") == 4
    cluster = load_cluster_text(_cluster_text("io", "20000", mode="inline"))
    assert concurrent_slots(cluster, "io") == 4
    # a group that shares no network with the master never connects: it runs nothing
    cut = text.replace("    networks: [net-b]\n", "    networks: [net-c]\n")
    cut = cut.replace("networks:\n", "networks:\n  - {name: net-c, subnet: 198.18.3.0/24}\n", 1)
    assert concurrent_slots(load_cluster_text(cut), "io") == 64


def test_waves_and_plain_rounding() -> None:
    assert job_seconds(400, 20000, 128) == 80.0  # 4 waves (3.1 rounded up) of 20 s
    assert job_seconds(128, 20000, 128) == 20.0
    assert [about(s) for s in (62.4, 80.0, 99.6, 1250.0)] == [
        "about 62 s",
        "about 80 s",
        "about 100 s",
        "about 1200 s",
    ]


def test_cluster_yaml_says_what_size_means_per_kind_with_the_real_defaults() -> None:
    """The comment next to ``size`` names every built-in kind, and each default it states is
    ``DEFAULT_SIZE``'s (so the comment cannot drift from the one definition)."""
    lines = CLUSTER_YAML.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  size:"))
    comment = " ".join(line.strip() for line in lines[at - 4 : at] if line.strip().startswith("#"))
    for kind in BUILTIN:
        assert f"{kind}:" in comment, kind
        if DEFAULT_SIZE[kind]:
            assert f"default {DEFAULT_SIZE[kind]}" in comment, kind
    assert lines[at] == "  size: null"  # the kind's default: changing kind needs no new size


def test_io_without_a_size_runs_its_default_and_reports_it(procs: Procs) -> None:
    """A real master and worker: ``submit --kind io`` without ``--size`` waits 10 ms a task
    (it once inherited 0, or whatever the file had) and the report says so."""
    procs.master()
    procs.worker("--name", "w1", "--mode", "inline")  # one at a time: 20 tasks take >= 0.2 s
    procs.wait_workers(1)
    t0 = time.monotonic()
    code, rep = procs.submit("--kind", "io", "--tasks", "20")
    elapsed = time.monotonic() - t0
    assert code == 0 and rep["ok"], rep["checks"]
    assert rep["job"]["size"] == DEFAULT_SIZE["io"] == 10
    assert rep["totals"]["ok"] == 20
    assert 20 * DEFAULT_SIZE["io"] / 1000 <= elapsed < 10, elapsed


def test_cpu_without_a_size_runs_its_default_and_reports_it(procs: Procs) -> None:
    procs.master()
    procs.worker("--name", "w1")
    procs.wait_workers(1)
    code, rep = procs.submit("--kind", "cpu", "--tasks", "4")
    assert code == 0 and rep["ok"], rep["checks"]
    assert rep["job"]["size"] == DEFAULT_SIZE["cpu"]


def test_a_kind_override_without_a_size_takes_the_new_kinds_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`orchestrate job --kind io` on a cpu file with `size: 20000` inherited the 20000, as
    20 s per io task, with no warning: a size belongs to its kind."""
    from orchestrate.cli import _job_overrides, build_parser

    cluster = load_cluster_text(_cluster_text("cpu", "20000"), "cluster.yaml", [])
    args = build_parser().parse_args(["job", "--kind", "io"])
    assert _job_overrides(args, cluster) == {"kind": "io", "size": None}  # io's own 10 ms
    args = build_parser().parse_args(["job", "--kind", "io", "--size", "5"])
    assert _job_overrides(args, cluster) == {"kind": "io", "size": 5}
    capsys.readouterr()
    io_file = load_cluster_text(_cluster_text("io", "20000"), "cluster.yaml", [])
    _job_overrides(build_parser().parse_args(["job", "--tasks", "400"]), io_file)
    assert "take about 80 s" in capsys.readouterr().err  # the merged job is estimated too
