"""``up`` fails fast, plainly, and leaves nothing behind (issue 11, "Must have" 4).

The engine is ``fake_engine.FakeEngine``: a fake at the docker-py layer under the real
``DockerBackend``, refusing with the texts a real Docker 20.10 engine gave.
"""

from __future__ import annotations

import json
import time
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from fake_engine import MEM_TOTAL, NCPU, FakeEngine, api_error
from rich.console import Console

from orchestrate import cli
from orchestrate.backends import docker_local
from orchestrate.backends.base import ExecResult, Images
from orchestrate.backends.docker_errors import EngineError, SubnetHolder, translate
from orchestrate.checks import workers_connected
from orchestrate.cluster import ClusterRun
from orchestrate.events import NullEvents
from orchestrate.model import Cluster, ConfigError, load_cluster_text, parse_memory
from orchestrate.ui import ConsoleEvents

TWO_NETS = """\
name: fast
networks:
  - name: a
    subnet: 198.18.235.0/24
  - name: b
    subnet: 198.18.236.0/24
master:
  networks: [a, b]
workers:
  - name: w
    count: 2
    networks: [a]
    resources:
      cpus: {cpus}
"""


class Backend(docker_local.DockerBackend):
    """The real Docker backend on the fake engine; images are not built (that is not
    what these tests are about), and the master's ``status`` is scripted."""

    def __init__(self, engine: FakeEngine, connected: tuple[str, ...] = ()) -> None:
        super().__init__(engine)  # type: ignore[arg-type]
        self.connected = connected

    def build_images(self, cluster: Cluster, events: Any) -> Images:
        return Images("distproc:test", "distproc:test")

    def control(self, cluster_name: str, argv: list[str], on_stderr_line: Any = None):
        workers = [{"identity": {"name": n}, "connected": True} for n in self.connected]
        return ExecResult(0, json.dumps({"workers": workers}), "")


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTPROC_STATE_DIR", str(tmp_path))


# -- the translation, fed the engine's real texts ------------------------------------------


def test_the_fake_errors_are_the_engines_texts() -> None:
    """What docker-py printed on the real engine, character for character."""
    assert str(api_error("overlap")) == (
        "403 Client Error for http+docker://localhost/v1.41/networks/create: Forbidden "
        '("Pool overlaps with other one on this address space")'
    )
    assert str(api_error("cpus")) == (
        "400 Client Error for http+docker://localhost/v1.41/containers/create?name="
        'e2e-11-fast-errs-c: Bad Request ("Range of CPUs is from 0.01 to 2.00, as there are '
        'only 2 CPUs available")'
    )


@pytest.mark.parametrize(
    ("which", "action", "obj", "says"),
    [
        (
            "cpus",
            "create container",
            "x-w-0",
            "could not create container x-w-0: the engine refuses its cpus (Range of CPUs is "
            "from 0.01 to 2.00, as there are only 2 CPUs available): lower resources.cpus",
        ),
        (
            "memory",
            "create container",
            "x-w-0",
            "could not create container x-w-0: the engine refuses its memory (Minimum memory "
            "limit allowed is 6MB): raise resources.memory",
        ),
        (
            "no_image",
            "create container",
            "x-w-0",
            "could not create container x-w-0: its image is not on the engine (No such image: "
            "e2e-11-fast-nosuch:1): run `orchestrate up` again",
        ),
        (
            "name_in_use",
            "create container",
            "x-w-0",
            "could not create container x-w-0: a container of that name exists and is not "
            "this cluster's: remove it (`docker rm -f x-w-0`) or rename the cluster",
        ),
        (
            "network_exists",
            "create network",
            "x-a",
            "could not create network x-a: a network of that name exists and is not this "
            "cluster's: remove it (`docker network rm x-a`) or rename the cluster",
        ),
        (
            "network_gone",
            "start container",
            "x-w-0",
            "could not start container x-w-0: network e2e-11-fast-nosuchnet not found",
        ),
    ],
)
def test_each_engine_error_is_one_plain_line(which: str, action: str, obj: str, says: str) -> None:
    err = translate(api_error(which), action, obj)
    assert str(err).startswith(says)
    assert "\n" not in str(err) and "Client Error" not in str(err) and "http+docker" not in str(err)
    assert err.raw == str(api_error(which))  # the engine's words, for --verbose


def test_a_subnet_clash_names_the_network_and_the_cluster_that_hold_it() -> None:
    held = [SubnetHolder("other-lan", "198.18.236.0/24", "other")]
    err = translate(
        api_error("overlap"), "create network", "fast-b", subnet="198.18.236.0/24", holders=held
    )
    assert str(err) == (
        "could not create network fast-b: its subnet 198.18.236.0/24 overlaps network "
        "'other-lan' (198.18.236.0/24) of cluster 'other': remove it (`orchestrate down "
        "--name other`) or pick another subnet in the file"
    )
    unlabelled = translate(
        api_error("overlap"),
        "create network",
        "fast-b",
        subnet="198.18.236.0/24",
        holders=[SubnetHolder("bridge2", "198.18.0.0/16")],
    )
    # a network distproc did not create (the engine's bridge, say) is never advised away
    text = str(unlabelled)
    assert "network 'bridge2' (198.18.0.0/16), which distproc did not create" in text
    assert "pick another subnet" in text and "rm" not in text


def test_an_unknown_engine_error_still_names_what_failed() -> None:
    exc = api_error("overlap")
    exc.explanation = "something new"
    err = translate(exc, "remove", "the objects of cluster 'x'")
    assert str(err) == (
        "could not remove the objects of cluster 'x': the engine said 'something new' "
        "(HTTP 403); run with --verbose for the raw error, and check `docker info`"
    )


def test_the_cli_prints_one_line_and_the_raw_error_only_with_verbose(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = FakeEngine()

    def refuse(**_: Any) -> list[Any]:
        raise api_error("network_gone")

    engine.containers.list = refuse  # type: ignore[method-assign]
    monkeypatch.setattr(docker_local, "DockerBackend", lambda: Backend(engine))
    assert cli.main(["down", "--name", "fast"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("orchestrate: could not remove the objects")
    assert cli.main(["down", "--name", "fast", "--verbose"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[1] == "orchestrate: the engine said: " + str(api_error("network_gone"))


# -- the resource pre-flight ----------------------------------------------------------------


def test_cpus_above_the_engines_count_fail_at_the_field_before_anything_is_created() -> None:
    engine = FakeEngine()
    cluster = load_cluster_text(TWO_NETS.format(cpus=64), "fast.yaml")
    with pytest.raises(ConfigError) as err:
        ClusterRun(cluster, Backend(engine), NullEvents()).up()
    assert [str(p) for p in err.value.problems] == [
        f"fast.yaml:14:13: workers[0].resources.cpus: cpus 64 is more than the engine has "
        f"({NCPU} CPUs, see `docker info`): use at most {NCPU}"
    ]
    assert err.value.exit_code == 2
    assert engine.created == []


def test_the_masters_cpus_are_checked_too() -> None:
    text = TWO_NETS.format(cpus=1).replace("master:\n", "master:\n  resources: {cpus: 3}\n")
    with pytest.raises(ConfigError) as err:
        ClusterRun(load_cluster_text(text, "m.yaml"), Backend(FakeEngine()), NullEvents()).up()
    assert str(err.value).startswith("m.yaml:8:21: master.resources.cpus: cpus 3 is more")


def test_memory_above_the_host_is_a_warning_not_an_error() -> None:
    from orchestrate.backends.base import EngineLimits
    from orchestrate.preflight import resource_problems

    cluster = load_cluster_text(TWO_NETS.format(cpus=1).replace("cpus: 1", "memory: 64g"))
    errors, warnings = resource_problems(cluster, EngineLimits(NCPU, MEM_TOTAL, False))
    assert errors == []
    assert [w.message for w in warnings] == [
        "workers[0].resources.memory: memory 64g is more than the engine's host has "
        f"({MEM_TOTAL / 2**30:.1f}GiB): the limit limits nothing",
        "master.resources: the engine does not enforce pids limits (no cgroup pids "
        "controller): `pids` is ignored on every container",
    ]


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("256m", 256 << 20),
        ("256M", 256 << 20),
        ("1g", 1 << 30),
        ("1GiB", 1 << 30),
        ("1.5gib", 3 << 29),
        ("256MiB", 256 << 20),
        ("268435456", 256 << 20),
    ],
)
def test_memory_is_docker_units_or_their_iec_names(value: str, size: int) -> None:
    assert parse_memory(value) == size


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (
            "256mb",
            "'256mb' is ambiguous (MB is 1000-based to most readers, 1024-based to "
            "Docker): write '256m' or '256MiB'",
        ),
        ("256 MB", "'256 MB' is ambiguous"),
        ("1GB", "write '1g' or '1GiB'"),
        ("256 m", "'256 m' has a space: write '256m'"),
    ],
)
def test_ambiguous_memory_is_refused_at_its_position_with_the_spelling_to_use(
    value: str, says: str
) -> None:
    text = TWO_NETS.format(cpus=1).replace("cpus: 1", f"memory: {value}")
    with pytest.raises(ConfigError) as err:
        load_cluster_text(text, "mem.yaml")
    [problem] = err.value.problems
    assert (problem.line, problem.col) == (14, 15) and says in problem.message


# -- roll-back of a failed up ----------------------------------------------------------------


def test_a_failed_create_rolls_back_what_this_run_created_and_names_the_clash() -> None:
    """Network ``a`` is created, ``b`` clashes with another cluster's network: ``a`` must
    not stay behind, and the error names the holder; the other cluster is untouched."""
    engine = FakeEngine()
    engine.networks.create(
        "other-lan",
        ipam={"Config": [{"Subnet": "198.18.236.0/24"}]},
        labels={"io.distproc.managed": "true", "io.distproc.cluster": "other"},
    )
    cluster = load_cluster_text(TWO_NETS.format(cpus=1))
    with pytest.raises(EngineError) as err:
        ClusterRun(cluster, Backend(engine), NullEvents()).up()
    assert "fast-a" in engine.created  # something was made before the refusal...
    assert engine.labelled("fast") == []  # ...and nothing of it is left
    assert engine.labelled("other") == ["other-lan"]
    assert str(err.value).startswith(
        "could not create network fast-b: its subnet 198.18.236.0/24 overlaps network "
        "'other-lan' (198.18.236.0/24) of cluster 'other'"
    )


def test_the_roll_back_removes_only_this_runs_objects() -> None:
    engine = FakeEngine()
    backend = Backend(engine)
    cluster = load_cluster_text(TWO_NETS.format(cpus=1))
    backend.create(cluster, "run1", backend.build_images(cluster, None), Path("k"), NullEvents())
    mine = len(engine.labelled("fast"))
    assert backend.sweep("fast", NullEvents(), run="other-run") == 0
    assert backend.sweep("fast", NullEvents(), run="run1") == mine == 6  # 2 nets, 3 containers,
    assert engine.labelled("fast") == []  # and the master's journal volume


def test_keep_data_keeps_the_journal_volume_and_the_next_create_finds_it() -> None:
    engine = FakeEngine()
    backend = Backend(engine)
    cluster = load_cluster_text(TWO_NETS.format(cpus=1))
    images = backend.build_images(cluster, None)
    backend.create(cluster, "run1", images, Path("k"), NullEvents())
    assert backend.sweep("fast", NullEvents(), keep_data=True) == 5
    assert engine.labelled("fast") == ["fast-journal"]
    backend.create(cluster, "run2", images, Path("k"), NullEvents())
    assert engine.created.count("fast-journal") == 1  # found, not made again
    assert backend.sweep("fast", NullEvents()) == 6 and engine.labelled("fast") == []


# -- workers that cannot reach the master -----------------------------------------------------

CUT = """\
name: cut
networks:
  - {name: with-master, subnet: 198.18.237.0/24}
  - {name: island, subnet: 198.18.238.0/24}
master: {networks: [with-master]}
workers:
  - {name: ok, count: 1, networks: [with-master]}
  - {name: stranded, count: 1, networks: [island]}
"""


def test_workers_off_the_master_networks_fail_at_once_and_are_not_waited_for() -> None:
    cluster = load_cluster_text(CUT)
    run = ClusterRun(cluster, Backend(FakeEngine(), connected=("cut-ok-0",)), NullEvents())
    t0 = time.monotonic()
    check = run.wait_ready(timeout=30)
    assert time.monotonic() - t0 < 5  # not the 30 s: nobody waited for cut-stranded-0
    assert not check["ok"]
    assert "1/2 workers connected after" in check["evidence"]
    assert check["evidence"].endswith(
        "never connected: cut-stranded-0: shares no network with the master"
    )


def test_only_unreachable_workers_means_no_wait_at_all() -> None:
    cluster = load_cluster_text(CUT.replace("{name: ok, count: 1", "{name: ok, count: 0"))
    t0 = time.monotonic()
    check = ClusterRun(cluster, Backend(FakeEngine()), NullEvents()).wait_ready(timeout=30)
    assert time.monotonic() - t0 < 1 and not check["ok"]


def test_workers_connected_names_the_unreachable_and_the_timed_out_apart() -> None:
    check = workers_connected(
        ["a-0", "b-0", "c-0"], set(), 90.0, {"c-0": "shares no network with the master"}
    )
    assert check["evidence"] == (
        "0/3 workers connected after 90.0s; never connected: "
        "c-0: shares no network with the master; a-0, b-0"
    )


def test_plain_progress_prints_a_count_when_it_changes_not_on_every_poll() -> None:
    """The 90 s wait at 2/4, polled every 0.5 s: was 42 lines, now one per change plus one
    every 30 s to show it still waits."""
    now = [0.0]
    out = StringIO()
    events = ConsoleEvents(Console(file=out, width=120), live=False, clock=lambda: now[0])
    for done in [0, 1, 2] + [2] * 180:
        events.progress("ready", done, 4, "workers connected")
        now[0] += 0.5
    lines = out.getvalue().splitlines()
    assert lines[0] == "    workers connected: 0/4"
    assert lines[1] == "    workers connected: 2/4"
    assert len(lines) <= 6, lines
