"""The dashboard's data layer (``LiveState`` and ``Poller``) on the in-memory ``FakeBackend``:
what the page is told about a cluster that is up, half up or down, its workers, its jobs and
their checks, and that the master is polled once per poll whatever the number of pages."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fake_backend import PYTHON, FakeBackend

from orchestrate.backends.base import EngineError
from orchestrate.cluster import ClusterRun
from orchestrate.dashboard.live import LiveState
from orchestrate.dashboard.poller import Busy, Poller
from orchestrate.events import NullEvents
from orchestrate.model import Cluster, OrchestrateError, load_cluster_text

TWO_NETS = """\
name: two
networks:
  - {name: a, subnet: 198.18.5.0/28}
  - {name: b, subnet: 198.18.5.16/28}
master: {networks: [a, b]}
workers:
  - {name: near, count: 2, networks: [a]}
  - {name: far, count: 1, networks: [b]}
job: {kind: square, tasks: 40, batch: 4}
"""


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTPROC_STATE_DIR", str(tmp_path / "state"))


def _up(backend: FakeBackend | None = None, run_job: bool = False) -> tuple[Cluster, FakeBackend]:
    cluster = load_cluster_text(TWO_NETS)
    backend = backend or FakeBackend()
    assert ClusterRun(cluster, backend, NullEvents()).up(run_job=run_job).ok
    return cluster, backend


def _snap(poller: Poller) -> dict[str, Any]:
    return json.loads(poller.latest()[1])


def _wait_action(poller: Poller, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while poller._action.locked():
        assert time.monotonic() < deadline, "the action did not end"
        time.sleep(0.01)
    poller.poll_once()
    return _snap(poller)


def test_an_up_cluster_shows_its_workers_topology_and_python() -> None:
    cluster, backend = _up()
    poller = Poller(cluster, backend, "two.yaml")
    poller.poll_once()
    snap = _snap(poller)
    assert snap["health"]["state"] == "up", snap["health"]
    rows = {w["name"]: w for w in snap["workers"]}
    assert list(rows) == ["two-near-0", "two-near-1", "two-far-0"]
    assert {w["state"] for w in rows.values()} == {"idle"}
    assert {w["python"] for w in rows.values()} == {PYTHON}
    assert rows["two-far-0"]["addresses"] == {"b": "198.18.5.19"}
    nodes = {e["data"]["id"]: e for e in snap["topology"]["elements"]}
    assert set(nodes) >= {"two-master", "net:a", "net:b", "two-near-0", "two-far-0"}
    assert "198.18.5.19 (b)" in nodes["two-far-0"]["data"]["label"]
    assert nodes["two-master"]["classes"] == "up" and nodes["two-near-1"]["classes"] == "idle"
    assert snap["machines"] == {"nodes": [{"name": "fake-1", "address": "", "role": "fake",
                                           "state": "ready"}], "multi": False}  # fmt: skip


def test_a_job_started_from_the_page_ends_with_its_checks() -> None:
    cluster, backend = _up()
    poller = Poller(cluster, backend, "two.yaml")
    poller.poll_once()
    started = poller.start_job({"tasks": 24, "kind": "square", "protocol": "leased"})
    assert started["overrides"] == {"tasks": 24, "kind": "square", "protocol": "leased"}
    snap = _wait_action(poller)
    submit = next(argv for argv in backend.controls if argv[0] == "submit")
    assert submit[submit.index("--tasks") + 1] == "24"
    job = snap["job"]
    assert (job["done"], job["total"], job["ok"], job["finished"]) == (24, 24, 24, True)
    checks = {c["name"]: c["status"] for c in snap["checks"]["items"]}
    assert checks["tasks_answered_once"] == "pass", snap["checks"]
    assert checks["results_crossed_the_network"] == "pass"
    assert snap["checks"]["job"] == job["job"] and not snap["checks"]["stale"]
    assert snap["action"]["running"] is False and "every check passed" in snap["action"]["message"]
    assert sum(w["tasks"] for w in snap["workers"]) == 24
    # the action checked the job: the poller does not read its report again
    assert not any(argv[0] == "report" for argv in backend.controls)


def test_a_bad_job_is_refused_with_nothing_started() -> None:
    cluster, backend = _up()
    poller = Poller(cluster, backend)
    with pytest.raises(ValueError, match="--tasks"):
        poller.start_job({"tasks": -1})
    with pytest.raises(ValueError, match="unknown job fields: flavour"):
        poller.start_job({"flavour": "vanilla"})
    assert not any(argv[0] == "submit" for argv in backend.controls)
    assert not poller._action.locked()


def test_one_action_at_a_time() -> None:
    cluster, backend = _up()
    poller = Poller(cluster, backend)
    assert poller._action.acquire()  # an action runs
    with pytest.raises(Busy):
        poller.check()
    poller._action.release()


def test_a_job_that_ended_elsewhere_is_checked_once_from_its_report() -> None:
    cluster, backend = _up(run_job=True)  # `up` ran the file's job, not the dashboard
    poller = Poller(cluster, backend)
    poller.poll_once()
    poller.poll_once()
    snap = _snap(poller)
    assert [argv[0] for argv in backend.controls].count("report") == 1
    assert snap["checks"]["source"] == f"the report of job {snap['job']['job']}"
    assert all(c["status"] != "fail" for c in snap["checks"]["items"]), snap["checks"]
    assert snap["events"] == []  # a job already over when first seen is not marked


def test_a_killed_worker_goes_and_is_marked_on_the_chart() -> None:
    cluster, backend = _up()
    poller = Poller(cluster, backend)
    poller.poll_once()
    backend.kill("two-near-1")
    poller.poll_once()
    snap = _snap(poller)
    rows = {w["name"]: w for w in snap["workers"]}
    assert rows["two-near-1"]["state"] == "gone"
    assert rows["two-near-1"]["container_state"] == "exited"
    assert snap["health"]["state"] == "partly up"
    assert "not connected: two-near-1" in snap["health"]["detail"]
    assert [e["label"] for e in snap["events"]] == ["two-near-1 gone (exited)"]
    nodes = {e["data"]["id"]: e for e in snap["topology"]["elements"]}
    assert nodes["two-near-1"]["classes"] == "gone"


def test_a_cluster_whose_master_is_dead_is_partly_up_and_one_that_is_down_says_so() -> None:
    cluster, backend = _up()
    poller = Poller(cluster, backend)
    backend.kill("two-master")
    poller.poll_once()
    snap = _snap(poller)
    detail = "the master is exited; 3/3 workers running, 0 connected"
    assert snap["health"] == {"state": "partly up", "detail": detail}
    assert {w["state"] for w in snap["workers"]} == {"connecting"}
    assert "status" not in poller.requests  # a master that is not running is not asked
    ClusterRun(cluster, backend, NullEvents()).down()
    poller.poll_once()
    snap = _snap(poller)
    assert snap["health"] == {"state": "down", "detail": "cluster 'two' is not running"}
    assert {w["state"] for w in snap["workers"]} == {"gone"}
    with pytest.raises(OrchestrateError, match="no job is running"):
        poller.cancel()


def test_an_unreachable_engine_is_said_and_tried_again() -> None:
    cluster, backend = _up()
    calls = []

    def make() -> FakeBackend:
        calls.append(1)
        if len(calls) == 1:
            raise EngineError("cannot reach the Docker engine: connection refused")
        return backend

    poller = Poller(cluster, make)
    poller.poll_once()
    assert _snap(poller)["health"] == {
        "state": "engine unreachable",
        "detail": "cannot reach the Docker engine: connection refused",
    }
    poller.poll_once()
    assert _snap(poller)["health"]["state"] == "up"


def test_throughput_rates_and_marks_follow_a_running_job() -> None:
    """The status of a job in progress, sampled at known times: the chart's series, each
    worker's rate and leases, and the marks of the job's start, of an event, and of its end."""
    cluster = load_cluster_text(TWO_NETS)
    now = [1000.0]
    live = LiveState(cluster, cluster.worker_names(), clock=lambda: now[0])
    inv = FakeBackend()
    ClusterRun(cluster, inv, NullEvents()).up(run_job=False)
    inventory = inv.inventory("two")

    def status(done: int, finished: bool = False) -> dict[str, Any]:
        job = {"job": "j1", "total": 100, "done": done, "ok": done, "failed": 0, "dead": 0,
               "lost": 0, "duplicates": 0, "finished": finished,
               "spec": {"kind": "square", "protocol": "leased"}}  # fmt: skip
        workers = [
            {"id": "w1", "identity": {"name": "two-near-0", "python": "3.12.1"},
             "connected": True, "left": False, "tasks": done, "leased": 0 if finished else 8},
        ]  # fmt: skip
        return {"workers": workers, "job": job}

    for t, done in ((1000.0, 0), (1001.0, 10), (1002.0, 30)):
        now[0] = t
        live.observe(inventory, status(done))
    live.mark("test", "a test event")
    now[0] = 1003.0
    live.observe(inventory, status(100, finished=True))
    now[0] = 1004.0
    live.observe(inventory, status(100, finished=True))  # the chart stays as it ended
    snap = live.snapshot()
    assert snap["series"] == {"t": [1001.0, 1002.0, 1003.0], "rate": [10.0, 20.0, 70.0]}
    near = snap["workers"][0]
    assert (near["state"], near["leased"], near["python"]) == ("idle", 0, "3.12.1")
    assert near["rate"] == pytest.approx(100 / 4)  # over the last 5 s: 100 tasks in 4 s
    assert [(e["kind"], e["label"]) for e in snap["events"]] == [
        ("job", "job j1 started: 100 square tasks (leased)"),
        ("test", "a test event"),
        ("job", "job j1 ended: 100/100 ok"),
    ]
    assert snap["events"][1]["t"] == 1002.0


def test_polling_is_one_request_per_poll_whatever_the_number_of_pages() -> None:
    """Pages read the cached snapshot; only ``poll_once`` reaches the backend. So 50 pages
    reading it 20 times each cost no request, and N polls cost N status requests."""
    cluster, backend = _up()
    poller = Poller(cluster, backend)
    before = len(backend.controls)
    for _ in range(50):
        poller.subscribe()
    for _ in range(20 * 50):
        poller.latest()
    assert len(backend.controls) == before
    for _ in range(5):
        poller.poll_once()
    assert [argv[0] for argv in backend.controls[before:]] == ["status"] * 5
    assert poller.requests == {"inventory": 5, "status": 5}
    assert _snap(poller)["poll"]["clients"] == 50


def test_the_poller_thread_polls_only_while_a_page_is_open() -> None:
    cluster, backend = _up()
    poller = Poller(cluster, backend, period=0.05).start()
    try:
        time.sleep(0.3)
        assert poller.polls == 0  # nobody looks: nothing is asked
        poller.subscribe()
        deadline = time.monotonic() + 5
        while poller.polls < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        poller.unsubscribe()
        time.sleep(0.2)
        polls = poller.polls
        time.sleep(0.3)
        assert poller.polls == polls
    finally:
        poller.stop()


def test_the_real_masters_status_has_what_the_page_reads() -> None:
    """A real ``Broker``'s ``status`` (the queue program's, not the fake's): per worker the
    tasks it did and holds, the Python it reported; the job's spec. What ``LiveState``
    makes of it: a worker holding a lease is working, and says its Python."""
    import platform

    from distproc import kinds
    from distproc.broker import Broker
    from distproc.identity import describe

    cluster = load_cluster_text(TWO_NETS)
    broker = Broker()
    broker.hello("w1", describe("two-near-0", "near", "198.18.5.2"))
    job = broker.submit({"kind": "square", "tasks": 10, "batch": 4})
    lease = broker.exchange("w1", None, [], 0.0, 4)
    assert lease is not None and lease[4] == [(0, 4)]  # ids 0-3, one range
    status = broker.status()
    worker = status["workers"][0]
    assert (worker["tasks"], worker["leased"]) == (0, 4)
    assert worker["identity"]["python"] == platform.python_version()
    assert status["job"]["spec"]["kind"] == "square" and status["job"]["job"] == job
    ((first, count),) = lease[4]
    values = [
        kinds.expected("square", p)
        for p in kinds.make_payloads("square", 10, 0, 0)[first : first + count]
    ]
    broker.exchange("w1", job, [(lease[1], lease[4], values, [])], 0.1, 0)
    worker = broker.status()["workers"][0]
    assert (worker["tasks"], worker["leased"]) == (4, 0)

    backend = FakeBackend()
    ClusterRun(cluster, backend, NullEvents()).up(run_job=False)
    live = LiveState(cluster, cluster.worker_names())
    broker.exchange("w1", job, [], 0.0, 4)  # holds 4 more
    live.observe(backend.inventory("two"), broker.status())
    row = live.snapshot()["workers"][0]
    assert (row["name"], row["state"], row["leased"], row["tasks"]) == ("two-near-0", "working",
                                                                        4, 4)  # fmt: skip
    assert row["python"] == platform.python_version()


def test_several_machines_show_as_boxes_around_what_runs_on_each() -> None:
    """On a backend with several machines (a swarm), the topology has a box per machine,
    around the containers the engine put there, and each row says its machine."""
    cluster, backend = _up(FakeBackend(nodes=("m1", "m2")))
    poller = Poller(cluster, backend)
    poller.poll_once()
    snap = _snap(poller)
    assert snap["machines"]["multi"] is True
    els = {e["data"]["id"]: e["data"] for e in snap["topology"]["elements"]}
    assert els["host:m1"]["kind"] == "machine" and els["host:m2"]["kind"] == "machine"
    rows = {w["name"]: w["machine"] for w in snap["workers"]}
    for name, machine in rows.items():
        assert els[name]["parent"] == f"host:{machine}"
    assert set(rows.values()) == {"m1", "m2"}
    assert els["two-master"]["parent"] == "host:m1"  # the fake places in turn: master first
    assert "parent" not in els["net:a"]  # a network spans machines
