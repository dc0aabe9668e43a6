"""The queue program on Python 3.13 and 3.14 (Debian trixie and testing, bootstrapped like the
image's own bookworm base) beside the image's 3.11, in real containers.

- The queue program's own unit tests pass under each Python, in its image.
- Workers on 3.13 and 3.14 join the default cluster's 3.11 master by hand and take part in a
  leased job and a classic one; the report names the Python each worker ran.
- The other way round: a cluster whose master (and worker) run 3.13, and a 3.11 worker
  joined by hand.

3.12 changed the handshake of ``multiprocessing.connection`` (gh-61460), and 3.12+ stops a
broken process pool's survivors with SIGTERM only (gh-94777): see images/distproc/pools.py.
The bases are bootstrapped once per machine (``orchestrate.backends.debian_pythons``).
"""

from __future__ import annotations

import importlib.metadata
import json
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from e2e_harness import REPO, Up, bring_up

from orchestrate import labels
from orchestrate.backends.debian_pythons import NEWER, SUITES, image_for
from orchestrate.backends.docker_images import SUITE_PYTHON
from orchestrate.backends.docker_local import DockerBackend
from orchestrate.state import KEY_IN_CONTAINER
from orchestrate.ui import ConsoleEvents

#: The unit tests that import nothing but the queue program (and their helpers). The master's
#: hardening tests (test_master_holds*.py, about 95 s a Python) are left out for time: the
#: master ships on the image's Python; its handshake is in test_stdlib_private.py.
QUEUE_PROGRAM_TESTS = (
    "test_stdlib_private.py",
    "test_ledger.py",
    "test_report.py",
    "test_pools.py",
    "test_broker_attacks.py",
    "test_worker_orphans.py",
    "test_queue_program.py",
)
HELPERS = ("conftest.py", "harness.py")
#: pytest and what it needs, copied from this environment: pure Python, any 3.x reads it.
#: pytest-timeout, so that a test that hangs fails by itself (as with make test-unit).
PYTEST_DISTS = ("pytest", "pluggy", "iniconfig", "packaging", "pygments", "pytest-timeout")
TEST_TIMEOUT = 300  # s, each test (pyproject.toml says 600 for the whole suite's)
UNIT_TIMEOUT = 900  # s for the lot; measured 58-62 s a Python here (2 shared cores)
CONNECT_TIMEOUT = 90  # s for a worker joined by hand to say hello
REVERSE_SUBNET = "198.18.151.0/24"


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


@pytest.fixture(scope="session")
def python_images(engine: None, request: pytest.FixtureRequest) -> dict[str, str]:
    """The distproc image on each Python (major.minor -> tag), built once per machine: the
    first run bootstraps two Debian suites (about a minute each here), shown line by line."""
    client = docker.from_env(timeout=300)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        events = ConsoleEvents(live=False)
        return {python: image_for(client, python, events) for python in SUITES}


# -- the queue program's unit tests, under each Python ----------------------------------------


def _stage(root: Path) -> Path:
    """The tests, pytest, and links to the program in the image: mounted read-only at /stage.
    The harness runs ``python3 -m distproc`` from /stage, so /stage/distproc is the image's
    own copy (its PYTHONPATH is dropped for the processes it starts)."""
    unit = root / "tests" / "unit"
    unit.mkdir(parents=True)
    for name in (*HELPERS, *QUEUE_PROGRAM_TESTS):
        shutil.copy(REPO / "tests" / "unit" / name, unit / name)
    for package in ("distproc", "distproc_kinds"):
        (root / package).symlink_to(f"/opt/distproc/{package}")
    for dist_name in PYTEST_DISTS:
        dist = importlib.metadata.distribution(dist_name)
        for f in dist.files or []:
            src = Path(str(dist.locate_file(f)))
            if ".." in f.parts or "__pycache__" in f.parts or not src.is_file():
                continue  # scripts outside site-packages, caches
            target = root / "libs" / f
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, target)
    return root


@pytest.mark.parametrize("python", NEWER)
def test_queue_program_unit_tests_pass_on(
    python: str, python_images: dict[str, str], tmp_path: Path
) -> None:
    """Under 3.13 or 3.14 in its image: a stdlib private API that moved fails
    test_stdlib_private.py by name, a pool that hangs fails test_pools.py."""
    stage = _stage(tmp_path / "stage")
    client = docker.from_env(timeout=120)
    # through sh: with --init, pytest as pid 1's child would make getppid() == 1, which
    # test_worker_orphans.py takes for "my parent died"
    script = 'python3 -m pytest -p no:cacheprovider -ra "$@"'
    args = ["-o", f"timeout={TEST_TIMEOUT}", *_test_paths()]
    container = client.containers.run(
        python_images[python],
        ["-c", script, "sh", *args],
        entrypoint=["sh"],
        name=f"e2e-unit-py{python.replace('.', '')}-{secrets.token_hex(3)}",
        labels={labels.TEST: "e2e"},
        detach=True,
        user="10001:10001",
        read_only=True,
        tmpfs={"/tmp": "rw,nosuid,nodev,size=256m"},
        network_mode="none",  # loopback only: the tests' masters and workers use 127.0.0.1
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"],
        init=True,
        mem_limit="1g",
        pids_limit=512,
        environment={"PYTHONPATH": "/stage/libs:/opt/distproc"},
        volumes={str(stage): {"bind": "/stage", "mode": "ro"}},
        working_dir="/stage",
    )
    try:
        try:
            code = container.wait(timeout=UNIT_TIMEOUT)["StatusCode"]
        except requests.exceptions.RequestException:  # timed out: fails, with its output
            code = None
        out = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    assert f"Python {python}." in out, out[-3000:]  # pytest's header: which Python ran them
    assert code == 0, out[-6000:]


def _test_paths() -> list[str]:
    return [f"tests/unit/{name}" for name in QUEUE_PROGRAM_TESTS]


# -- workers joined by hand ----------------------------------------------------------------


def _key_file(up: Up, directory: Path) -> Path:
    """A copy of the cluster's key the container user can read (as the tutorial test's)."""
    key = (up.state / up.name / "authkey").read_text().strip()
    path = directory / f"{up.name}-key"
    path.write_text(key)
    path.chmod(0o644)
    return path


def _status(up: Up) -> dict[str, Any]:
    res = up.cli("status", "-f", str(up.file), "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _join(
    client: docker.DockerClient, up: Up, image: str, network: str, keyfile: Path, tag: str
) -> Any:
    """A worker container started by hand on ``network``, hardened as the orchestrator's."""
    status = _status(up)
    engine_net = next(n["engine_name"] for n in status["networks"] if n["name"] == network)
    name = f"{up.name}-hand-{tag}-{secrets.token_hex(2)}"
    port = status["master"]["port"]
    container = client.containers.create(
        image,
        [
            "worker",
            "--master",
            f"{up.name}-master:{port}",
            "--name",
            name,
            "--group",
            tag,
            "--connect-timeout",
            str(CONNECT_TIMEOUT),
        ],
        name=name,
        hostname=name,
        labels={labels.TEST: "e2e"},
        network=engine_net,
        user="10001:10001",
        read_only=True,
        tmpfs={"/tmp": "rw,nosuid,nodev,size=64m"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"],
        init=True,
        mem_limit="192m",
        nano_cpus=500_000_000,
        pids_limit=128,
        environment={"DISTPROC_AUTHKEY_FILE": KEY_IN_CONTAINER},
        volumes={str(keyfile): {"bind": KEY_IN_CONTAINER, "mode": "ro"}},
    )
    container.start()
    return container


def _wait_connected(up: Up, containers: list[Any]) -> None:
    """Until the master counts every one of ``containers`` as a connected worker."""
    backend = DockerBackend()
    names = {c.name for c in containers}
    deadline = time.monotonic() + CONNECT_TIMEOUT
    connected: set[str] = set()
    while time.monotonic() < deadline:
        res = backend.control(up.name, ["status", "--connect-timeout", "2"])
        if res.exit_code == 0:
            workers = json.loads(res.stdout)["workers"]
            connected = {w["identity"].get("name") for w in workers if w["connected"]} & names
            if connected == names:
                return
        time.sleep(1)
    logs = {c.name: c.logs(tail=20).decode(errors="replace") for c in containers}
    pytest.fail(f"not connected after {CONNECT_TIMEOUT}s: {names - connected}; logs: {logs}")


def _job(up: Up, *overrides: str) -> dict[str, Any]:
    res = up.cli("job", "-f", str(up.file), "--json", *overrides)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)


def _pythons_of(outcome: dict[str, Any], names: set[str]) -> dict[str, tuple[str, int]]:
    """name -> (the Python it reported, results accepted from it), for workers in ``names``."""
    return {
        w["identity"]["name"]: (w["identity"].get("python", "?"), w["tasks"])
        for w in outcome["report"]["workers"]
        if w["identity"].get("name") in names
    }


def _nothing_lost(outcome: dict[str, Any]) -> None:
    totals = outcome["report"]["totals"]
    assert totals["lost"] == totals["dead"] == totals["failed"] == 0, totals
    assert totals["ok"] == totals["tasks"], totals
    assert outcome["ok"], [c for c in outcome["checks"] if not c["ok"]]


def _leased_then_classic(
    up: Up, joined: dict[str, str], master_python: str
) -> list[dict[str, Any]]:
    """A leased job (the file's kind: cpu on process pools in the default cluster) and a
    classic one (the tutorial's queues); each worker in ``joined`` (name -> major.minor) took
    part in both, on the Python it should, under a master on ``master_python``; nothing
    lost."""
    leased = _job(up, "--tasks", "800")
    classic = _job(up, "--protocol", "classic", "--kind", "square", "--tasks", "3000")
    outcomes = [leased, classic]
    for outcome in outcomes:
        _nothing_lost(outcome)
        protocol = outcome["report"]["job"]["protocol"]
        assert _minor(outcome["report"]["master"]["python"]) == master_python, protocol
        seen = _pythons_of(outcome, set(joined))
        print(protocol, "master", outcome["report"]["master"]["python"], "joined", seen)
        assert set(seen) == set(joined), (protocol, seen)
        for name, (python, tasks) in seen.items():
            assert _minor(python) == joined[name] and tasks > 0, (protocol, name, python, tasks)
    return outcomes


def _stop(containers: list[Any]) -> None:
    for c in containers:
        try:
            c.stop(timeout=15)  # SIGTERM: the worker leaves, its tasks handed back
        finally:
            c.remove(force=True)


def test_workers_on_newer_pythons_join_a_311_master(
    default_cluster: Up, python_images: dict[str, str], tmp_path: Path
) -> None:
    """3.13 on net-a and 3.14 on net-b, beside the cluster's own four workers."""
    assert default_cluster.code == 0, default_cluster.stderr[-3000:]
    client = docker.from_env()
    keyfile = _key_file(default_cluster, tmp_path)
    nets = ("net-a", "net-b")
    containers = []
    try:
        for python, net in zip(NEWER, nets, strict=True):
            tag = f"py{python.replace('.', '')}"
            containers.append(
                _join(client, default_cluster, python_images[python], net, keyfile, tag)
            )
        _wait_connected(default_cluster, containers)
        joined = {c.name: python for c, python in zip(containers, NEWER, strict=True)}
        outcomes = _leased_then_classic(default_cluster, joined, SUITE_PYTHON)
        for outcome in outcomes:  # and the summary counts them as joined by hand
            rows = {r["worker"]: r["tasks"] for r in outcome["summary"]}
            for name in joined:
                assert rows.get(f"{name} (joined by hand)", 0) > 0, rows
    finally:
        _stop(containers)


@pytest.fixture(scope="module")
def py313_cluster(
    engine: None,
    request: pytest.FixtureRequest,
    python_images: dict[str, str],
    state_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Up]:
    """A one-worker cluster whose image is built on the 3.13 base (``images.base``)."""
    from orchestrate.backends.debian_pythons import ensure_base
    from orchestrate.events import NullEvents

    base = ensure_base(docker.from_env(), "3.13", NullEvents())  # built by python_images
    text = (Path(__file__).parent / "topologies" / "one-worker.yaml").read_text()
    assert "name: e2e-one" in text and "198.18.110.0/24" in text
    text = text.replace("name: e2e-one", "name: e2e-py313").replace(
        "198.18.110.0/24", REVERSE_SUBNET
    )
    path = tmp_path_factory.mktemp("py313") / "cluster.yaml"
    path.write_text(text + f"images:\n  base: {base}\n")
    yield from bring_up(request, path, state_dir)


def test_a_311_worker_joins_a_313_master(
    py313_cluster: Up, python_images: dict[str, str], tmp_path: Path
) -> None:
    """The other way round: the master (and the cluster's own worker) on 3.13."""
    outcome = py313_cluster.outcome
    assert py313_cluster.code == 0 and outcome is not None, py313_cluster.stderr[-3000:]
    assert _minor(outcome["report"]["master"]["python"]) == "3.13"
    [own] = outcome["report"]["workers"]
    assert _minor(own["identity"]["python"]) == "3.13"
    client = docker.from_env()
    own_image = python_images[SUITE_PYTHON]
    keyfile = _key_file(py313_cluster, tmp_path)
    hand = _join(client, py313_cluster, own_image, "net", keyfile, "py311")
    try:
        _wait_connected(py313_cluster, [hand])
        _leased_then_classic(py313_cluster, {hand.name: SUITE_PYTHON}, "3.13")
    finally:
        _stop([hand])
