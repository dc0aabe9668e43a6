"""``ChaosRun`` on the in-memory ``FakeBackend``: the timeline (inject while the job runs, heal
after ``for``), the refusals (said before anything changes), and what happens when a fault
cannot be healed. The faults themselves, on real containers, are tests/e2e/test_chaos.py's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_backend import NO_NETEM, FakeBackend

from orchestrate import cli
from orchestrate.backends import faults as ops
from orchestrate.backends.swarm.faults import SwarmFaults
from orchestrate.chaos.marks import marks_path
from orchestrate.chaos.runner import ChaosRefused, ChaosRun
from orchestrate.chaos.verdict import exit_code
from orchestrate.cluster import ClusterRun
from orchestrate.events import NullEvents
from orchestrate.model import ChaosEntry, Cluster, load_cluster_text

FILE = """\
name: c
networks: [{name: net, subnet: 198.18.150.0/24}]
master: {networks: [net]}
workers:
  - {name: alpha, count: 2, networks: [net]}
job: {kind: square, tasks: 300, batch: 5, lease_seconds: 2}
"""


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTPROC_STATE_DIR", str(tmp_path / "state"))


def _up(round_delay: float = 0.05, text: str = FILE) -> tuple[Cluster, FakeBackend, ChaosRun]:
    """The cluster up on a fake whose jobs take ``round_delay`` per round of leases (300
    tasks in leases of 5 for 2 workers: 30 rounds)."""
    cluster = load_cluster_text(text, "c.yaml")
    backend = FakeBackend(round_delay=round_delay)
    runner = ClusterRun(cluster, backend, NullEvents())
    assert runner.up(run_job=False).ok
    return cluster, backend, ChaosRun(runner, job_timeout=60, marks=marks_path(cluster.name))


def _entry(scenario: str, **fields: object) -> ChaosEntry:
    return ChaosEntry.model_validate({"scenario": scenario, **fields})


def _submitted(backend: FakeBackend) -> int:
    return sum(1 for argv in backend.controls if argv[0] == "submit")


def test_a_fault_strikes_while_the_job_runs_and_is_healed_after() -> None:
    cluster, backend, chaos = _up()
    [v] = chaos.execute(chaos.plan([_entry("blackhole", at=0.3, **{"for": 0.4})], {}))
    assert (v.status, v.lost, v.ok, v.tasks) == ("pass", 0, 300, 300), v.reason
    assert v.injected_at is not None and v.healed_at is not None and v.job_seconds is not None
    assert 0.3 <= v.injected_at < v.healed_at < v.job_seconds
    assert v.healed_at - v.injected_at == pytest.approx(0.4, abs=0.15)
    log = backend.fake_faults.log  # type: ignore[union-attr]
    assert [(op, name) for op, name, _ in log] == [
        ("probe", ""), ("netns", "c-alpha-0"), ("netns", "c-alpha-0")]  # fmt: skip
    assert "-I INPUT 1 -m comment --comment distproc-chaos -j DROP" in log[1][2]
    assert "-D OUTPUT -m comment --comment distproc-chaos -j DROP" in log[2][2]
    marks = [json.loads(line) for line in marks_path(cluster.name).read_text().splitlines()]
    assert [m["kind"] for m in marks] == ["chaos", "chaos"]
    assert "dropped every packet" in marks[0]["label"] and "again" in marks[1]["label"]
    assert v.recovery is not None and v.options == {"at": 0.3, "for": 0.4}


def test_a_worker_added_by_scale_is_expected_to_take_a_share() -> None:
    _, backend, chaos = _up()
    [v] = chaos.execute(chaos.plan([_entry("scale", at=0.3, **{"for": 0.5})], {}))
    assert v.status == "pass", v.reason
    shares = next(c for c in v.checks if c["name"] == "every_worker_contributed")
    assert "c-alpha-2" in shares["evidence"] and "joined by hand" not in shares["evidence"]
    assert [op for op, *_ in backend.fake_faults.log] == ["add-worker", "remove-worker"]  # type: ignore[union-attr]
    assert "c-alpha-2" not in backend.objects  # removed when healed


def test_a_job_that_ends_before_the_fault_is_due_tested_nothing() -> None:
    """The fake's job ends at once: nothing is injected, and that is not a pass."""
    _, backend, chaos = _up(round_delay=0)
    verdicts = chaos.execute(chaos.plan([_entry("partition", at=1)], {}))
    [v] = verdicts
    assert v.status == "skipped" and "ended before the fault was due at 1s" in v.reason
    assert v.injected_at is None and exit_code(verdicts) == 1
    assert backend.fake_faults.log == []  # type: ignore[union-attr]


def test_a_fault_that_cannot_be_healed_stops_the_rest() -> None:
    _, backend, chaos = _up()
    planned = chaos.plan([_entry("scale", at=0.2, **{"for": 0.2}), _entry("partition")], {})
    backend.fake_faults.fail = "remove-worker"  # type: ignore[union-attr]
    first, second = chaos.execute(planned)
    assert first.status == "error" and "could not heal scale" in first.reason
    assert "left faulty" in first.reason
    assert second.status == "error" and "not run" in second.reason
    assert _submitted(backend) == 1


@pytest.mark.parametrize(
    ("entry", "kernel", "said"),
    [
        (_entry("slow-link", delay=20), {}, f"slow-link's delay needs netem, which this kernel "
         f"lacks (probed in a throwaway namespace: {NO_NETEM})"),
        (_entry("slow-link", loss=1), {}, "slow-link's loss needs netem"),
        (_entry("blackhole"), {ops.IPTABLES: "iptables: Protocol not supported"},
         "blackhole needs iptables, which this kernel lacks"),
        (_entry("slow-link"), {ops.TBF: "Error: Specified qdisc kind is unknown."},
         "slow-link needs tbf"),
    ],
    ids=["netem delay", "netem loss", "iptables", "tbf"],
)  # fmt: skip
def test_what_the_kernel_lacks_is_refused_before_anything_changes(
    entry: ChaosEntry, kernel: dict[str, str], said: str
) -> None:
    _, backend, chaos = _up()
    chaos.faults = backend.faults("c", "")
    backend.fake_faults.kernel.update(kernel)  # type: ignore[union-attr]
    with pytest.raises(ChaosRefused) as exc:
        chaos.plan([entry], {})
    assert said in str(exc.value) and "nothing was changed" in str(exc.value)
    assert exc.value.exit_code == 2
    assert backend.fake_faults.log == [("probe", "", "")]  # type: ignore[union-attr]
    assert _submitted(backend) == 0


def test_a_slow_link_without_netem_options_needs_no_netem() -> None:
    _, _, chaos = _up()
    [p] = chaos.plan([_entry("slow-link", rate="64kbit")], {})
    assert p.options == {"at": 2.0, "for": 5.0, "rate": "64kbit"}


class SwarmLike(FakeBackend):
    """The fake engine with the swarm backend's faults (what it offers, and why not)."""

    def faults(self, cluster_name: str, run: str) -> SwarmFaults:  # type: ignore[override]
        return SwarmFaults(None, cluster_name, run)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("scenario", "said"),
    [
        ("partition", "cannot be disconnected from an overlay network"),
        ("blackhole", "the chaos helper image is not shipped to the nodes"),
        ("slow-link", "the chaos helper image is not shipped to the nodes"),
        ("scale", "scaling a service changes what Swarm keeps running"),
    ],
)
def test_the_swarm_backend_refuses_what_it_does_not_do(scenario: str, said: str) -> None:
    cluster = load_cluster_text(FILE, "c.yaml")
    backend = SwarmLike()
    runner = ClusterRun(cluster, backend, NullEvents())
    assert runner.up(run_job=False).ok
    chaos = ChaosRun(runner)
    with pytest.raises(ChaosRefused) as exc:
        chaos.plan([_entry(scenario)], {})
    assert f"{scenario} is not supported on the swarm backend" in str(exc.value)
    assert said in str(exc.value)
    for ok in ("kill-worker", "pause-worker"):
        assert chaos.plan([_entry(ok)], {})[0].spec.name == ok


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        (_entry("kill-worker", target="alpha-5"), "no worker 'alpha-5' (workers: alpha-0, "),
        (_entry("scale", target="beta"), "no worker group 'beta'"),
        (_entry("kill-worker", job={"protocol": "classic", "kind": "io"}), "classic protocol only"),
    ],
    ids=["worker", "group", "job"],
)  # fmt: skip
def test_a_bad_target_or_job_is_refused(entry: ChaosEntry, said: str) -> None:
    _, backend, chaos = _up()
    with pytest.raises(ChaosRefused) as exc:
        chaos.plan([entry], {})
    assert said in str(exc.value) and _submitted(backend) == 0


def test_the_command_refuses_netem_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`orchestrate chaos slow-link --delay 20` on a kernel without netem: exit 2, the reason
    on stderr, no job run."""
    file = tmp_path / "c.yaml"
    file.write_text(FILE)
    _, backend, _ = _up()
    monkeypatch.setattr(cli, "_backend", lambda _cluster: backend)
    code = cli.main(["chaos", "slow-link", "--delay", "20", "-f", str(file)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "slow-link's delay needs netem, which this kernel lacks" in err
    assert _submitted(backend) == 0
