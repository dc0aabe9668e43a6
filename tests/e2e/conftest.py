"""End-to-end fixtures: real clusters on the real Docker engine, torn down by label.

Without an engine these tests skip with the reason, except in CI (``CI`` set), where
they fail: CI must run them. Each cluster is brought up once per session by the CLI
(``orchestrate up --json``); on any test failure its container logs are saved under
``e2e-artifacts/<cluster>/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import chromium_problem, save_failure, start_chromium
from e2e_harness import REPO, Up, bring_up

TOPOLOGIES = Path(__file__).parent / "topologies"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.e2e)
        if item.get_closest_marker("swarm"):
            # in the JUnit report, where .ci/run checks that no swarm test was skipped
            item.user_properties.append(("marker", "swarm"))


def _engine_problem() -> str | None:
    try:
        import docker

        docker.from_env(timeout=10).ping()
    except Exception as exc:  # any failure means: no usable engine
        return f"no Docker engine ({type(exc).__name__}: {exc})"
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Keep each phase's report on the test, for fixtures that save evidence on failure."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """One headless Chromium for the session's browser tests; like the engine, missing it
    skips locally and fails in CI."""
    problem = chromium_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}: CI must run the browser tests (.ci/run installs it)")
        pytest.skip(f"{problem}: install it to run the browser tests")
    driver = start_chromium()
    yield driver
    driver.quit()


@pytest.fixture
def browser(chromium: object, request: pytest.FixtureRequest) -> Iterator[object]:
    """The session's Chromium; a screenshot, the HTML and the console are saved under
    e2e-artifacts/dashboard/ when the test fails."""
    yield chromium
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        save_failure(chromium, request.node.name)


@pytest.fixture(scope="session")
def engine() -> Iterator[None]:
    problem = _engine_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}: CI must run the e2e tests (.ci/run starts dockerd)")
        pytest.skip(f"{problem}: start dockerd to run the e2e tests")
    yield
    _remove_test_containers()


def _remove_test_containers() -> None:
    """What the tests started by hand, found by their label, if a test left any behind."""
    import docker

    from orchestrate import labels

    client = docker.from_env()
    for c in client.containers.list(all=True, filters={"label": f"{labels.TEST}=e2e"}):
        c.remove(force=True)


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="session")
def default_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's cluster.yaml itself, renamed and on its own subnets, so that it can
    run beside a cluster the user brought up with ``make cluster-up``."""
    text = (REPO / "cluster.yaml").read_text()
    assert "name: distproc" in text and "198.18.1.0/24" in text and "198.18.2.0/24" in text
    text = (
        text.replace("name: distproc", "name: e2e-default")
        .replace("198.18.1.0/24", "198.18.101.0/24")
        .replace("198.18.2.0/24", "198.18.102.0/24")
    )
    path = tmp_path_factory.mktemp("default") / "cluster.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def default_cluster(
    engine: None, request: pytest.FixtureRequest, default_file: Path, state_dir: Path
) -> Iterator[Up]:
    yield from bring_up(request, default_file, state_dir)


@pytest.fixture(scope="session")
def one_worker(engine: None, request: pytest.FixtureRequest, state_dir: Path) -> Iterator[Up]:
    yield from bring_up(request, TOPOLOGIES / "one-worker.yaml", state_dir)


@pytest.fixture(scope="session")
def three_networks(engine: None, request: pytest.FixtureRequest, state_dir: Path) -> Iterator[Up]:
    yield from bring_up(request, TOPOLOGIES / "three-networks.yaml", state_dir)


@pytest.fixture(scope="session")
def dash_cluster(engine: None, request: pytest.FixtureRequest, state_dir: Path) -> Iterator[Up]:
    """The dashboard's cluster, up with no job: the page starts the first one."""
    yield from bring_up(request, TOPOLOGIES / "dashboard.yaml", state_dir, "--no-job")


@pytest.fixture(scope="session")
def unreachable(engine: None, request: pytest.FixtureRequest, state_dir: Path) -> Iterator[Up]:
    yield from bring_up(
        request, TOPOLOGIES / "unreachable-worker.yaml", state_dir, "--ready-timeout", "15"
    )


@pytest.fixture(scope="session")
def chaos_cluster(engine: None, request: pytest.FixtureRequest, state_dir: Path) -> Iterator[Up]:
    """The chaos scenarios' cluster, up with no job: each scenario runs its own."""
    yield from bring_up(request, TOPOLOGIES / "chaos.yaml", state_dir, "--no-job")
