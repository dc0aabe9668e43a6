"""Output that tells the truth at a glance: a down cluster is said first, ``run`` is filled,
``check`` shows only what it did, addresses are in numeric order, counts have the right
plural, and a CI line is never cut mid-entry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from distproc.ledger import Ledger
from distproc.spec import JobSpec
from distproc.text import ip_sorted, plural
from fake_backend import FakeBackend
from test_e2e_checks import Rec, _through_json
from test_one_job_spec import MINIMAL, _cluster_with

from orchestrate import checks, cli, labels
from orchestrate.backends import docker_local
from orchestrate.backends.base import ContainerInfo, Inventory, NetworkInfo
from orchestrate.cluster import ClusterNotRunning, ClusterRun
from orchestrate.events import NullEvents
from orchestrate.ui import ConsoleEvents, make_console, print_checks

# -- a command on a cluster that is down says so first ------------------------------------


class FakeClient:
    """docker-py's ``containers.list`` / ``networks.list``, for the real ``DockerBackend``."""

    def __init__(self, containers: list[Any]) -> None:
        def listed(all: bool = False, filters: object = None) -> list[Any]:
            return [c for c in containers if all or c.status == "running"]

        self.containers = SimpleNamespace(list=listed)
        self.networks = SimpleNamespace(list=lambda filters=None: [])
        self.info = lambda: {"Name": "fake-host"}


REAL_BACKEND = docker_local.DockerBackend  # the real one, before a test patches the name


def _real_backend(client: FakeClient) -> Callable[[], docker_local.DockerBackend]:
    return lambda: REAL_BACKEND(client)  # type: ignore[arg-type]


def _stopped_master() -> Any:
    return SimpleNamespace(
        id="m1",
        name="mini-master",
        status="exited",
        labels={labels.ROLE: labels.ROLE_MASTER, labels.RUN: "r1", labels.PORT: "5000"},
        attrs={"NetworkSettings": {}},
    )


@pytest.mark.parametrize("command", ["job", "check"])
@pytest.mark.parametrize(
    ("containers", "why"),
    [([], "is not running: "), ([_stopped_master()], "is not running (its master is exited): ")],
    ids=["no-containers", "master-exited"],
)
def test_a_command_on_a_down_cluster_says_so_before_any_header(
    command: str,
    containers: list[Any],
    why: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    file = tmp_path / "mini.yaml"
    file.write_text(MINIMAL)
    monkeypatch.setenv("DISTPROC_STATE_DIR", str(tmp_path / "state"))
    client = FakeClient(containers)
    monkeypatch.setattr(docker_local, "DockerBackend", _real_backend(client))
    assert cli.main([command, "-f", str(file)]) == cli.EXIT_RUNTIME
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"orchestrate: cluster 'mini' {why}start it with `orchestrate up -f {file}`"
    ], err


def test_the_default_file_is_also_make_s_cluster() -> None:
    runner = ClusterRun(_cluster_with({}), REAL_BACKEND(FakeClient([])), NullEvents())  # type: ignore[arg-type]
    for source in (None, "cluster.yaml", "/work/x/cluster.yaml"):
        runner.source = source
        with pytest.raises(ClusterNotRunning, match="start it with `make cluster-up` or `orch"):
            runner.running()


# -- run is filled; check shows only what check did ----------------------------------------


def _running(events: Any = None) -> ClusterRun:
    """A one-worker cluster of 3-task jobs, up on the fake backend."""
    runner = ClusterRun(_cluster_with({"tasks": 3}), FakeBackend(), events or NullEvents())
    runner.up(run_job=False)
    return runner


def test_job_json_has_the_run_of_the_cluster_containers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTPROC_STATE_DIR", str(tmp_path))
    runner = _running()
    outcome = runner.job(timeout=30)
    assert outcome.as_json()["run"] == runner.backend.inventory("mini").run != ""


def _finish(command: str, runner: ClusterRun, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()  # what came before (bringing the cluster up)
    outcome = runner.job(timeout=30) if command == "job" else runner.check()
    args = SimpleNamespace(json=False)
    cli._finish(args, runner, outcome, command)  # type: ignore[arg-type]
    return capsys.readouterr().err


def test_check_shows_only_what_check_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``check`` reads the last job's report: it does not print that job's line as its own."""
    monkeypatch.setenv("DISTPROC_STATE_DIR", str(tmp_path))
    runner = _running(ConsoleEvents(live=False))
    job = _finish("job", runner, capsys)
    assert "job: 3/3 tasks in" in job and "==> running the job: 3 square tasks" in job, job
    check = _finish("check", runner, capsys)
    assert "==> checking the last job's report against the engine" in check, check
    assert "tasks in" not in check and "running the job" not in check, check
    assert "PASS tasks_answered_once: 3/3 ok" in check


# -- addresses in numeric order ------------------------------------------------------------


def test_ip_sorted_is_numeric() -> None:
    assert ip_sorted(["198.18.1.10", "", "198.18.1.9", "198.18.1.100", "10.0.0.1"]) == [
        "10.0.0.1",
        "198.18.1.9",
        "198.18.1.10",
        "198.18.1.100",
        "",
    ]


def _ten_and_nine() -> tuple[Any, Inventory]:
    workers = [Rec("a", {"local_ip": "198.18.1.10"}), Rec("b", {"local_ip": "198.18.1.9"})]
    job = Ledger("j", JobSpec(tasks=4, batch=2), list(range(4)))
    job.lease(0, 2)
    job.lease(1, 2)
    job.accept(0, "198.18.1.10", [(0, 0), (1, 1)])
    job.accept(1, "198.18.1.9", [(2, 4), (3, 9)])
    inv = Inventory(
        "c",
        networks=[NetworkInfo("n", "c-n", "198.18.1.0/24")],
        master=ContainerInfo("c-master", "m", "master", "running", {"n": "198.18.1.2"}),
        workers=[
            ContainerInfo("c-a-0", "a", "worker", "running", {"n": "198.18.1.10"}),
            ContainerInfo("c-b-0", "b", "worker", "running", {"n": "198.18.1.9"}),
        ],
        others=[
            ContainerInfo("z", "z", "", "running", {"n": "198.18.1.11"}, managed=False),
            ContainerInfo("y", "y", "", "running", {"n": "198.18.1.8"}, managed=False),
        ],
    )
    return _through_json(job, workers), inv


def test_the_report_and_the_evidence_list_addresses_in_numeric_order() -> None:
    rep, inv = _ten_and_nine()
    assert list(rep.results_by_peer) == ["198.18.1.9", "198.18.1.10"]
    evidence = checks.results_crossed_the_network(rep, inv)["evidence"]
    assert evidence.index("198.18.1.9 ") < evidence.index("198.18.1.10 "), evidence
    assert [c.name for c in checks.by_address(inv.others)] == ["y", "z"]


def test_a_report_in_text_order_still_gives_evidence_in_numeric_order() -> None:
    """An older master sorted peers as text: orchestrate orders them itself."""
    rep, inv = _ten_and_nine()
    rep.results_by_peer = dict(sorted(rep.results_by_peer.items()))  # .10 first
    evidence = checks.results_crossed_the_network(rep, inv)["evidence"]
    assert evidence.index("198.18.1.9 ") < evidence.index("198.18.1.10 "), evidence


# -- plurals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "word", "text"),
    [(1, "worker", "1 worker"), (0, "worker", "0 workers"), (2, "square task", "2 square tasks"),
     (1, "engine sandbox", "1 engine sandbox"), (3, "engine sandbox", "3 engine sandboxes"),
     (2, "process", "2 processes")],
)  # fmt: skip
def test_plural(n: int, word: str, text: str) -> None:
    assert plural(n, word) == text


def test_one_worker_is_not_workers() -> None:
    assert "1/1 worker connected" in checks.workers_connected(["w"], {"w"}, 0.1)["evidence"]
    assert "0/1 worker connected" in checks.workers_connected(["w"], set(), 0.1)["evidence"]
    job = Ledger("j", JobSpec(tasks=1), [0])
    rep = _through_json(job, [])
    inv = Inventory("c", master=ContainerInfo("m", "m", "master", "running"), workers=[])
    inv.workers = [ContainerInfo(n, n, "worker", "running") for n in ("a", "b")]
    skipped = checks.every_worker_contributed(rep, inv, ["a", "b"])["evidence"]
    assert skipped == "not required: 1 task for 2 workers (required from 4 per worker)"
    ns = checks.separate_network_namespaces(rep, inv)["evidence"]
    assert ns.endswith("0 distinct worker namespaces reported by 0 workers; "
                       "1 engine sandbox for 3 containers"), ns  # fmt: skip


# -- CI lines are whole entries ------------------------------------------------------------


def test_a_long_check_line_in_ci_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """``results_crossed_the_network`` lists every worker address: far past 160 columns."""
    entries = ", ".join(f"198.18.1.{i} (c-a-{i} on net-a) 25" for i in range(3, 40))
    evidence = f"925/925 results arrived from worker addresses: {entries}"
    print_checks(make_console(live=False), [checks.check("results_crossed", "pass", evidence)])
    assert capsys.readouterr().err.splitlines() == [f"PASS results_crossed: {evidence}"]


def test_a_long_event_line_in_ci_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    events = ConsoleEvents(live=False)
    long = "x " * 150
    events.step(long)
    events.info(long)
    events.warn(long)
    events.detail(long)
    assert len(capsys.readouterr().err.splitlines()) == 4
