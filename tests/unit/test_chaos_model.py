"""``chaos:`` in cluster.yaml, validated like the rest (every problem at file:line:col), and
``orchestrate chaos``'s flags checked the same way, before any engine is asked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrate import cli
from orchestrate.backends.faults import OPERATIONS
from orchestrate.chaos.scenarios import IMPLEMENTATIONS
from orchestrate.model import ConfigError, Problem, load_cluster_text
from orchestrate.model.chaos import SCENARIO_NAMES, SCENARIOS

REPO = Path(__file__).resolve().parents[2]

HEAD = """\
name: c
networks: [{name: net, subnet: 198.18.150.0/24}]
master: {networks: [net]}
workers:
  - {name: alpha, count: 2, networks: [net]}
job: {kind: io, tasks: 3000, lease_seconds: 2}
"""


def _problems(chaos: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_cluster_text(HEAD + chaos, "c.yaml")
    return [str(p) for p in exc.value.problems]


def test_a_chaos_list_loads_with_every_field() -> None:
    cluster = load_cluster_text(
        HEAD + "chaos:\n"
        "  - {scenario: kill-worker, target: alpha-0, at: 2, for: 5}\n"
        "  - {scenario: slow-link, target: c-alpha-1, rate: 64kbit, delay: 20, loss: 1.5}\n"
        "  - {scenario: scale, target: alpha}\n"
        "  - {scenario: kill-worker, job: {protocol: classic, kind: square, size: null}}\n",
        "c.yaml",
    )
    kill, slow, scale, classic = cluster.chaos
    assert (kill.target, kill.at, kill.for_) == ("alpha-0", 2.0, 5.0)
    assert (slow.rate, slow.delay, slow.loss) == ("64kbit", 20.0, 1.5)
    assert scale.target == "alpha" and scale.at is None and scale.for_ is None
    assert classic.job is not None
    assert classic.job.given() == {"kind": "square", "protocol": "classic", "size": None}


@pytest.mark.parametrize(
    ("chaos", "expected"),
    [
        ("chaos: [{scenario: kill}]",
         "c.yaml:7:20: chaos[0].scenario: must be 'kill-worker', 'pause-worker', 'partition', "
         "'blackhole', 'slow-link', 'restart-master' or 'scale', got 'kill'"),
        ("chaos: [{scenario: pause-worker, rate: 1mbit}]",
         "c.yaml:7:40: chaos[0].rate: rate is an option of slow-link, not of pause-worker"),
        ("chaos: [{scenario: slow-link, rate: 12mbps}]",
         "c.yaml:7:37: chaos[0].rate: '12mbps' is not a rate: write a whole number of bits per "
         "second with tc's unit bit, kbit, mbit or gbit, no space ('64kbit', '1mbit')"),
        ("chaos: [{scenario: blackhole, at: 0}]",
         "c.yaml:7:35: chaos[0].at: must be > 0, got 0"),
        ("chaos: [{scenario: blackhole, for: .inf}]",
         "c.yaml:7:36: chaos[0].for: must be a finite number, got inf"),
        ("chaos: [{scenario: blackhole, fro: 3}]",
         "c.yaml:7:31: chaos[0]: unknown key 'fro' (did you mean 'for'? allowed: scenario, "
         "target, at, for, rate, delay, loss, job)"),
        ("chaos: [{scenario: partition, target: alpha-2}]",
         "c.yaml:7:39: chaos[0].target: no worker 'alpha-2' (workers: alpha-0, alpha-1)"),
        ("chaos: [{scenario: partition, target: beta-0}]",
         "c.yaml:7:39: chaos[0].target: 'beta-0' is not a worker of this file (workers: "
         "alpha-0, alpha-1)"),
        ("chaos: [{scenario: scale, target: beta}]",
         "c.yaml:7:35: chaos[0].target: no worker group 'beta' (groups: alpha)"),
        ("chaos: [{scenario: kill-worker, job: {protocol: classic}}]",
         "c.yaml:7:49: chaos[0].job.protocol: the classic protocol only supports kind 'square', "
         "not 'io' (the file's job)"),
        ("chaos: [{scenario: kill-worker, job: {tasks: many}}]",
         "c.yaml:7:46: chaos[0].job.tasks: expected an integer, got 'many' (a string)"),
    ],
    ids=["scenario", "option of another", "rate", "at", "for", "unknown key", "index",
         "no such group", "scale's group", "classic needs square", "job field"],
)  # fmt: skip
def test_problems_are_named_at_file_line_col(chaos: str, expected: str) -> None:
    assert _problems(chaos) == [expected]


def test_a_fault_meant_to_outlast_the_lease_that_does_not_is_a_warning() -> None:
    warnings: list[Problem] = []
    load_cluster_text(HEAD + "chaos: [{scenario: pause-worker, for: 2}]", "c.yaml", warnings)
    assert [str(w) for w in warnings] == [
        "c.yaml:7:39: chaos[0].for: pause-worker for 2 s is not past the job's lease "
        "(2 s): no lease expires"
    ]


def test_every_scenario_has_one_implementation_and_the_schema_names_them() -> None:
    assert set(IMPLEMENTATIONS) == set(SCENARIOS)
    for name, impl in IMPLEMENTATIONS.items():
        assert impl.name == name and impl.uses <= set(OPERATIONS), name
    schema = json.loads((REPO / "cluster.schema.json").read_text())
    entry = schema["$defs"]["ChaosEntry"]["properties"]
    assert entry["scenario"]["enum"] == list(SCENARIO_NAMES)
    assert "for" in entry and "for_" not in entry


@pytest.fixture
def file(tmp_path: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(HEAD)
    return path


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["chaos", "kill"], "scenario: Input should be 'kill-worker'"),
        (["chaos", "blackhole", "--at", "0"], "--at: Input should be greater than 0"),
        (["chaos", "pause-worker", "--rate", "1mbit"],
         "--rate: rate is an option of slow-link, not of pause-worker"),
        (["chaos", "partition", "--target", "alpha-7"],
         "--target: no worker 'alpha-7' (workers: alpha-0, alpha-1)"),
        (["chaos", "--at", "3"], "--at: name a scenario"),
        (["chaos"], "name a scenario (kill-worker, pause-worker"),
        (["chaos", "kill-worker", "--protocol", "classic"],
         "job: --kind: the classic protocol only supports kind 'square', not 'io'"),
    ],
    ids=["scenario", "at", "option", "target", "flags without one", "none", "job"],
)  # fmt: skip
def test_bad_flags_exit_2_before_any_engine_is_asked(
    file: Path, argv: list[str], said: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    def no_engine(*_: object) -> None:
        raise AssertionError("an engine was asked")

    monkeypatch.setattr(cli, "_backend", no_engine)
    assert cli.main([*argv, "-f", str(file)]) == 2
    assert said in capsys.readouterr().err
