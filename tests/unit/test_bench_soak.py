"""The soak (bench/soak.py) on the in-memory ``FakeBackend``: the seeded picks, what it skips
and says is missing, the aggregation, the deadline, and the exit codes (a lost task on the
fake exits 3). The soak on real containers is `make soak`."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest
from fake_backend import FakeBackend

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, str(REPO_ROOT))

from bench import soak  # noqa: E402
from orchestrate.backends.base import ExecResult  # noqa: E402
from orchestrate.chaos.runner import ChaosRun  # noqa: E402
from orchestrate.chaos.scenarios import IMPLEMENTATIONS  # noqa: E402
from orchestrate.cluster import ClusterRun  # noqa: E402
from orchestrate.events import NullEvents  # noqa: E402
from orchestrate.model import load_cluster, load_cluster_text  # noqa: E402
from orchestrate.model.chaos import SCENARIOS, ScenarioSpec  # noqa: E402

# the soak's topology, with a shorter job and lease: a fake job lasts 0.4 s (20 rounds)
FILE = """\
name: s
networks: [{name: net, subnet: 198.18.152.0/24}]
master: {networks: [net]}
workers:
  - {name: big, count: 1, networks: [net]}
  - {name: small, count: 2, networks: [net]}
job: {kind: square, tasks: 300, batch: 5, lease_seconds: 1}
"""
#: scenarios that end soon on the fake (pause-worker lasts past the lease even there)
QUICK = ("kill-worker", "blackhole", "scale", "partition")
AT = (0.05, 0.15)


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTPROC_STATE_DIR", str(tmp_path / "state"))


def _runner(backend: FakeBackend | None = None, up: bool = True) -> ClusterRun:
    cluster = load_cluster_text(FILE, "s.yaml")
    runner = ClusterRun(cluster, backend or FakeBackend(round_delay=0.02), NullEvents())
    if up:
        assert runner.up(run_job=False).ok
    return runner


def _soak(runner: ClusterRun, minutes: float = 0.04, **kw: Any) -> soak.Soak:
    return soak.Soak(runner, minutes, seed=3, job_timeout=30, only=QUICK, at_range=AT, **kw)


# -- the picks ------------------------------------------------------------------------------
def _draw(seed: int, n: int = 200) -> list[tuple[str, str | None, float | None]]:
    usable = soak.candidates(QUICK)
    picks = soak.schedule(random.Random(seed), usable, ["big-0", "small-0", "small-1"],
                          ["big", "small"], n)  # fmt: skip
    return [(p.kind, p.entry.target if p.entry else None, p.entry.at if p.entry else None)
            for p in picks]  # fmt: skip


def test_the_picks_are_seeded_and_vary_scenario_target_and_time() -> None:
    first, again, other = _draw(11), _draw(11), _draw(12)
    assert first == again and first != other
    kinds = {k for k, _, _ in first}
    assert kinds == {*QUICK, soak.NONE}  # every candidate drawn, and jobs with no fault
    assert 0.05 < sum(k == soak.NONE for k, _, _ in first) / len(first) < 0.3
    workers = {t for k, t, _ in first if k in ("kill-worker", "blackhole", "partition")}
    assert workers == {"big-0", "small-0", "small-1"}
    assert {t for k, t, _ in first if k == "scale"} == {"big", "small"}
    times = [at for k, _, at in first if at is not None]
    assert all(soak.AT_RANGE[0] <= at <= soak.AT_RANGE[1] for at in times)
    assert len(set(times)) > len(times) / 2


def test_with_nothing_usable_every_job_has_no_fault() -> None:
    picks = soak.schedule(random.Random(1), [], ["big-0"], ["big"], 5)
    assert [p.kind for p in picks] == [soak.NONE] * 5


def test_every_registered_scenario_is_offered_or_skipped_with_its_reason() -> None:
    """Whatever the registry holds (restart-master once it lands): planned on the fake, each
    candidate is usable or refused with plan's reason; slow-link with netem's delay is refused
    on a kernel without netem, as here."""
    chaos = ChaosRun(_runner())
    cands = soak.candidates()
    assert {c.scenario for c in cands} == set(SCENARIOS) & set(IMPLEMENTATIONS)
    usable, refused = soak.available(chaos, cands)
    assert sorted([c.label for c in usable] + list(refused)) == sorted(c.label for c in cands)
    assert "slow-link" in [c.label for c in usable]
    assert "needs netem, which this kernel lacks" in refused["slow-link (netem delay)"]


class _Restart:
    name = "restart-master"
    uses = frozenset({"kill", "restart"})


def test_restart_master_is_picked_up_from_the_registry_or_said_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(SCENARIOS, "restart-master", raising=False)
    monkeypatch.delitem(IMPLEMENTATIONS, "restart-master", raising=False)
    assert "restart-master" in soak.unavailable()
    assert "restart-master" not in [c.scenario for c in soak.candidates()]
    spec = ScenarioSpec("restart-master", "SIGKILL the master", target="master")
    monkeypatch.setitem(SCENARIOS, "restart-master", spec)
    monkeypatch.setitem(IMPLEMENTATIONS, "restart-master", _Restart())  # type: ignore[arg-type]
    assert soak.unavailable() == {}
    assert "restart-master" in [c.scenario for c in soak.candidates()]


# -- the verdict ----------------------------------------------------------------------------
def _record(n: int, kind: str, status: str = "pass", lost: int = 0, injected: bool = True,
            dup: int = 0) -> dict[str, Any]:  # fmt: skip
    return {"job": n, "kind": kind, "status": status, "injected": injected, "reason": status,
            "tasks": {"submitted": 100, "ok": 100 - lost, "failed": 0, "dead": 0,
                      "duplicates": dup, "lost": lost}}  # fmt: skip


def test_the_aggregate_sums_every_job_and_counts_faults_by_kind() -> None:
    runs = [_record(1, "kill-worker", dup=2), _record(2, soak.NONE, injected=False),
            _record(3, "kill-worker", "fail", lost=3), _record(4, "blackhole", "skipped",
            injected=False), _record(5, "scale", "error", injected=False), _record(6, soak.NONE,
            "fail", lost=1, injected=False)]  # fmt: skip
    v = soak.aggregate(runs)
    assert (v["jobs"], v["tasks"], v["tasks_ok"]) == (6, 600, 596)
    assert (v["lost"], v["duplicates"]) == (4, 2)
    assert v["faults"] == {"kill-worker": 2, "none": 2}
    assert v["not_injected"] == {"blackhole": 1, "scale": 1}
    assert [r["job"] for r in v["failed"]] == [3, 6] and [r["job"] for r in v["errors"]] == [5]
    assert soak.exit_code(v) == 3


@pytest.mark.parametrize(
    ("runs", "code"),
    [
        ([_record(1, "kill-worker"), _record(2, soak.NONE, injected=False)], 0),
        ([_record(1, "kill-worker"), _record(2, "blackhole", "skipped", injected=False)], 0),
        ([_record(1, "kill-worker"), _record(2, "scale", "error", injected=False)], 1),
        ([_record(1, "kill-worker", "fail"), _record(2, "scale", "error")], 3),
        ([_record(1, "kill-worker", "fail", lost=1), _record(2, "scale", "error")], 3),
        ([], 0),
    ],
    ids=["clean", "not-injected", "error", "failed-check", "lost", "no-job"],
)
def test_the_exit_code(runs: list[dict[str, Any]], code: int) -> None:
    assert soak.exit_code(soak.aggregate(runs)) == code
    assert soak.exit_code({**soak.aggregate(runs), "error": "the cluster did not get ready"}) \
        == max(code, 1)  # fmt: skip


def test_restarts_seen_are_changes_of_the_masters_instance() -> None:
    assert soak.restarts_seen(["a", "a", None, "b", "b", "c"]) == 2
    assert soak.restarts_seen([None, None]) == 0


# -- the run on the fake ------------------------------------------------------------------
def test_a_soak_brings_the_cluster_up_runs_until_the_deadline_and_takes_it_down() -> None:
    backend = FakeBackend(round_delay=0.02)
    runner = _runner(backend, up=False)
    v = _soak(runner).run()
    assert v["exit_code"] == 0, (v["errors"], v["failed"])
    assert v["brought_up"] and v["taken_down"] and backend.objects == {}
    deadline = 0.04 * 60
    starts = [r["started_s"] for r in v["runs"]]
    assert v["jobs"] >= 2 and all(s < deadline for s in starts)
    assert v["seconds"] >= deadline  # it stopped at the deadline, not before
    assert v["lost"] == 0 and v["tasks"] == 300 * v["jobs"]
    assert sum(v["faults"].values()) + sum(v["not_injected"].values()) == v["jobs"]
    assert v["master"]["memory_start_bytes"] == v["master"]["memory_end_bytes"] == 12 * 2**20
    assert v["master"]["restarts_seen"] == 0


def test_a_running_cluster_is_left_running_and_the_job_count_is_bounded() -> None:
    backend = FakeBackend(round_delay=0.0)
    v = _soak(_runner(backend), minutes=5, max_jobs=3).run()
    assert v["jobs"] == 3 and v["seconds"] < 60
    assert not v["brought_up"] and backend.inventory("s").master is not None


class LosingBackend(FakeBackend):
    """The fake, whose master loses one task of every job: counted lost in its report."""

    def control(self, cluster_name: str, argv: list[str], on_stderr_line: Any = None
                ) -> ExecResult:  # fmt: skip
        res = super().control(cluster_name, argv, on_stderr_line)
        if argv[0] != "submit":
            return res
        report = json.loads(res.stdout)
        report["totals"]["ok"] -= 1
        report["totals"]["lost"] += 1
        self.reports[-1] = report
        return ExecResult(3, json.dumps(report), "")


def test_a_lost_task_exits_3_and_is_in_the_json(tmp_path: Path) -> None:
    file, out = tmp_path / "s.yaml", tmp_path / "soak.json"
    file.write_text(FILE)
    argv = ["-f", str(file), "--minutes", "0.02", "--seed", "5", "--json", str(out),
            "--scenarios", "kill-worker,scale"]  # fmt: skip
    code = soak.main(argv, backend=LosingBackend(round_delay=0.02))
    v = json.loads(out.read_text())
    assert code == 3 and v["exit_code"] == 3 and not v["ok"]
    assert v["lost"] == v["jobs"] >= 1
    assert all(r["tasks"]["lost"] == 1 and r["status"] == "fail" for r in v["runs"])


def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert soak.main(["--scenarios", "kill-worker,melt-cpu"]) == 2
    assert "unknown melt-cpu" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(FILE.replace("count: 2", "count: -1"))
    assert soak.main(["-f", str(bad)]) == 2
    assert f"{bad}:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        soak.main(["--minutes", "0"])
    assert exc.value.code == 2


def test_the_soak_topology_is_valid() -> None:
    cluster = load_cluster(soak.DEFAULT_FILE)
    assert cluster.name == "soak" and cluster.total_workers == 3
