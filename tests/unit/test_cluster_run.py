"""``ClusterRun`` (up, wait, job, check, down) on the in-memory ``FakeBackend``: the layer above
the backend interface, with no engine (docker-py's fake-API idea, one layer up)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from distproc import cli as distproc_cli
from fake_backend import KEY_PATH, FakeBackend

from orchestrate.backends.base import EngineError, ExecResult
from orchestrate.cluster import ClusterNotRunning, ClusterRun, JobFailed
from orchestrate.events import NullEvents
from orchestrate.model import Cluster, ConfigError, load_cluster, load_cluster_text

REPO = Path(__file__).resolve().parents[2]

TWO_NETS = """\
name: two
networks:
  - {name: a, subnet: 198.18.5.0/28}
  - {name: b, subnet: 198.18.5.16/28}
master: {networks: [a]}
workers:
  - {name: near, count: 2, networks: [a]}
  - {name: far, count: 1, networks: [b]}
job: {kind: square, tasks: 40, batch: 4}
"""


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTPROC_STATE_DIR", str(tmp_path / "state"))


def _run(cluster: Cluster, backend: FakeBackend | None = None) -> ClusterRun:
    return ClusterRun(cluster, backend or FakeBackend(), NullEvents())


def _checks(outcome: object) -> dict[str, str]:
    return {c["name"]: c["status"] for c in outcome.checks}  # type: ignore[attr-defined]


def _master_alone(name: str) -> str:
    """The master on m1, every worker on m2 or m3."""
    return "m1" if name.endswith("-master") else ("m2" if name[-1] in "02468" else "m3")


def test_up_runs_the_default_file_and_every_check_passes() -> None:
    """The repository's cluster.yaml, as `make cluster-up` runs it, on three fake machines,
    the master alone on its own."""
    backend = FakeBackend(nodes=("m1", "m2", "m3"), place=_master_alone)
    outcome = _run(load_cluster(REPO / "cluster.yaml"), backend).up()
    assert outcome.ok, outcome.checks
    assert _checks(outcome) == dict.fromkeys(
        ["workers_connected", "tasks_answered_once", "every_worker_contributed",
         "results_crossed_the_network", "results_crossed_machines",
         "separate_network_namespaces", "isolation"], "pass",
    )  # fmt: skip
    assert outcome.job_report is not None and outcome.job_report.totals.ok == 400
    # the master was reached through control(), with the address the backend added
    assert all(argv[1:3] == ["--master", "127.0.0.1:5000"] for argv in backend.controls)
    status = outcome.inventory.as_status()  # type: ignore[union-attr]
    assert status["backend"] == "fake"
    assert [n["name"] for n in status["nodes"]] == ["m1", "m2", "m3"]
    assert {w["node"] for w in status["workers"]} == {"m2", "m3"}
    assert status["master"]["node"] == "m1"


def test_results_from_the_masters_machine_fail_results_crossed_machines() -> None:
    """Two machines, the nodes in turn: two workers share the master's machine."""
    outcome = _run(load_cluster(REPO / "cluster.yaml"), FakeBackend(nodes=("m1", "m2"))).up()
    crossed = next(c for c in outcome.checks if c["name"] == "results_crossed_machines")
    assert crossed["status"] == "fail"
    assert "on the master's node m1" in crossed["evidence"]


def test_on_one_machine_results_crossed_machines_is_skipped() -> None:
    outcome = _run(load_cluster(REPO / "cluster.yaml"), FakeBackend()).up()
    crossed = next(c for c in outcome.checks if c["name"] == "results_crossed_machines")
    assert crossed["status"] == "skipped" and "one machine" in crossed["evidence"]
    assert outcome.ok


def test_the_key_is_delivered_as_a_secret_never_in_a_command_or_env_value(tmp_path: Path) -> None:
    backend = FakeBackend()
    _run(load_cluster_text(TWO_NETS), backend).up(run_job=False)
    assert backend.authkey_seen is not None
    key = backend.authkey_seen.read_text()
    assert len(key) >= 32
    for obj in backend.objects.values():
        assert key not in " ".join(obj.command) and key not in " ".join(obj.env.values())
    assert {o.env.get("DISTPROC_AUTHKEY_FILE") for o in backend.objects.values() if o.command} == {
        KEY_PATH
    }


def test_workers_off_the_masters_networks_fail_at_once_with_the_reason() -> None:
    outcome = _run(load_cluster_text(TWO_NETS)).up()
    ready = outcome.checks[0]
    assert ready["name"] == "workers_connected" and ready["status"] == "fail"
    assert "two-far-0: shares no network with the master" in ready["evidence"]
    assert outcome.job_report is None  # no job on a cluster that is not ready


def test_a_killed_worker_is_named_by_readiness(tmp_path: Path) -> None:
    backend = FakeBackend()
    cluster = load_cluster_text(
        TWO_NETS.replace("count: 1, networks: [b]", "count: 0, networks: [b]")
    )
    run = _run(cluster, backend)
    assert run.up(run_job=False).ok
    backend.kill("two-near-1")
    ready = run.wait_ready(timeout=0.1)
    assert ready["status"] == "fail" and "never connected: two-near-1" in ready["evidence"]


def test_job_passes_every_field_and_check_reads_the_last_report_without_a_new_job() -> None:
    backend = FakeBackend()
    cluster = load_cluster_text(
        TWO_NETS.replace("count: 1, networks: [b]", "count: 0, networks: [b]")
    )
    run = _run(cluster, backend)
    run.up(run_job=False)
    job = run.job({"tasks": 12, "seed": 7})
    submit = distproc_cli.build_parser().parse_args(backend.controls[-1])
    assert (submit.command, submit.tasks, submit.seed, submit.kind) == ("submit", 12, 7, "square")
    assert job.job_ran and job.job_report is not None and job.job_report.totals.ok == 12
    submits = sum(argv[0] == "submit" for argv in backend.controls)
    checked = run.check(ready_timeout=1)
    assert sum(argv[0] == "submit" for argv in backend.controls) == submits  # none more
    assert not checked.job_ran and checked.ok, checked.checks
    assert checked.job_report is not None and checked.job_report.totals.tasks == 12


def test_up_refused_by_the_engine_rolls_back_what_it_created() -> None:
    backend = FakeBackend(refuse=("two-near-1", "the engine refuses its cpus"))
    with pytest.raises(EngineError, match="two-near-1: the engine refuses its cpus"):
        _run(load_cluster_text(TWO_NETS), backend).up()
    assert backend.objects == {}  # networks, master and two-near-0 were made, then removed


def test_resources_the_engine_lacks_are_a_config_error_and_nothing_is_made() -> None:
    backend = FakeBackend(cpus=1)
    more = "master: {networks: [a], resources: {cpus: 2}}"
    cluster = load_cluster_text(TWO_NETS.replace("master: {networks: [a]}", more))
    with pytest.raises(ConfigError, match="more than the engine has"):
        _run(cluster, backend).up()
    assert backend.objects == {}


def test_down_removes_everything_once_and_commands_then_say_it_is_down() -> None:
    backend = FakeBackend()
    run = _run(load_cluster_text(TWO_NETS), backend)
    run.up(run_job=False)
    made = len(backend.objects)
    assert made == 2 + 1 + 3  # networks, master, workers
    assert run.down() == made and run.down() == 0
    with pytest.raises(ClusterNotRunning, match="cluster 'two' is not running"):
        run.job()


def test_a_second_up_sweeps_what_the_first_left() -> None:
    backend = FakeBackend()
    cluster = load_cluster_text(TWO_NETS)
    _run(cluster, backend).up(run_job=False)
    first = backend.inventory("two").run
    _run(cluster, backend).up(run_job=False)
    inv = backend.inventory("two")
    assert inv.run != first and len(inv.workers) == 3


class _MasterDiesThenCtrlC(FakeBackend):
    """The master dies (SIGKILL) just after naming its job; the user presses Ctrl-C while
    ``job`` waits for it to answer again."""

    def control(self, cluster_name, argv, on_stderr_line=None):  # type: ignore[no-untyped-def]
        if argv[0] == "submit":
            assert on_stderr_line is not None
            on_stderr_line('{"job": {"id": "7f3a0c1e-1", "total": 40}}')
            self.kill(f"{cluster_name}-master")
            return ExecResult(137, "", "")
        if argv[0] == "status" and self.objects[f"{cluster_name}-master"].state != "running":
            raise KeyboardInterrupt
        return super().control(cluster_name, argv, on_stderr_line)


class _Said(NullEvents):
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def test_ctrl_c_while_the_master_is_down_says_the_job_was_not_cancelled_and_how_to_follow_it() -> (
    None
):
    backend = _MasterDiesThenCtrlC()
    cluster = load_cluster_text(TWO_NETS)
    ClusterRun(cluster, backend, NullEvents()).up(run_job=False)
    events = _Said()
    with pytest.raises(KeyboardInterrupt):  # exit 130, as any Ctrl-C; not an engine error
        ClusterRun(cluster, backend, events).job()
    said = events.warnings[-1]
    assert "could not cancel job 7f3a0c1e-1" in said
    assert "orchestrate job --attach 7f3a0c1e-1" in said


class _JobLeftRunning(FakeBackend):
    """A master that replayed a kept journal (``down --keep-data``, then ``up``): the job it
    resumed still runs, so it refuses another, as the real master does."""

    def control(self, cluster_name, argv, on_stderr_line=None):  # type: ignore[no-untyped-def]
        if argv[0] == "submit":
            return ExecResult(1, "", "distproc submit: job 7f3a0c1e-1 is still running\n")
        res = super().control(cluster_name, argv, on_stderr_line)
        if argv[0] == "status":
            status = json.loads(res.stdout)
            status["job"] = {"job": "7f3a0c1e-1", "total": 40, "done": 12, "finished": False}
            return ExecResult(0, json.dumps(status), "")
        return res


def test_a_job_refused_because_one_still_runs_says_how_to_follow_that_one() -> None:
    backend = _JobLeftRunning()
    cluster = load_cluster_text(TWO_NETS)
    run = ClusterRun(cluster, backend, NullEvents())
    run.up(run_job=False)
    with pytest.raises(JobFailed) as failed:
        run.job()
    said = str(failed.value)
    assert "job 7f3a0c1e-1 (12/40 done) still runs on the master" in said
    assert "`orchestrate job --attach 7f3a0c1e-1`" in said
