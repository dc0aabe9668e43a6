"""Each end-to-end check passes on good evidence and fails on the bad evidence it exists for."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from orchestrate import checks
from orchestrate.backends.base import ContainerInfo, ExecResult, Inventory, NetworkInfo


def inventory() -> Inventory:
    return Inventory(
        cluster="c",
        networks=[
            NetworkInfo("net-a", "c-net-a", "198.18.1.0/24"),
            NetworkInfo("net-b", "c-net-b", "198.18.2.0/24"),
        ],
        master=ContainerInfo(
            "c-master",
            "m",
            "master",
            "running",
            {"net-a": "198.18.1.2", "net-b": "198.18.2.2"},
            sandbox="sb-m",
        ),
        workers=[
            ContainerInfo(
                "c-a-0",
                "a0",
                "worker",
                "running",
                {"net-a": "198.18.1.3"},
                sandbox="sb-a0",
                group="a",
            ),
            ContainerInfo(
                "c-b-0",
                "b0",
                "worker",
                "running",
                {"net-b": "198.18.2.3"},
                sandbox="sb-b0",
                group="b",
            ),
        ],
    )


def report() -> dict[str, Any]:
    return {
        "guarantee": "at-least-once execution, exactly-once accounting",
        "totals": {"tasks": 10, "ok": 10, "failed": 0, "dead": 0, "duplicates": 1},
        "checks": [
            {"name": n, "ok": True, "evidence": ""}
            for n in ("every_id_accounted", "values_correct", "all_ok")
        ],
        "results_by_peer": {"198.18.1.3": 6, "198.18.2.3": 4},
        "master": {"netns": "net:[1]"},
        "workers": [
            {
                "id": "a",
                "peers": ["198.18.1.3"],
                "identity": {"local_ip": "198.18.1.3", "netns": "net:[2]"},
            },
            {
                "id": "b",
                "peers": ["198.18.2.3"],
                "identity": {"local_ip": "198.18.2.3", "netns": "net:[3]"},
            },
        ],
    }


EXPECTED = ["c-a-0", "c-b-0"]


def test_good_evidence_passes_every_check() -> None:
    results = checks.job_checks(report(), inventory(), EXPECTED)
    assert [(c["name"], c["ok"]) for c in results] == [
        ("tasks_answered_once", True),
        ("every_worker_contributed", True),
        ("results_crossed_the_network", True),
        ("separate_network_namespaces", True),
    ]
    crossed = results[2]["evidence"]
    assert "10/10 results" in crossed and "198.18.1.3 (c-a-0 on net-a) 6" in crossed


def test_readiness_names_the_laggards() -> None:
    c = checks.workers_connected(EXPECTED, {"c-a-0"}, 15.2)
    assert not c["ok"] and "never connected: c-b-0" in c["evidence"]
    assert checks.workers_connected(EXPECTED, set(EXPECTED), 1.0)["ok"]


@pytest.mark.parametrize("broken", ["every_id_accounted", "values_correct", "all_ok"])
def test_answers_fail_when_the_master_own_check_fails(broken: str) -> None:
    rep = report()
    for c in rep["checks"]:
        if c["name"] == broken:
            c.update(ok=False, evidence="something is off")
    c = checks.tasks_answered_once(rep)
    assert not c["ok"] and f"{broken}: something is off" in c["evidence"]


def test_answers_fail_when_tasks_are_missing() -> None:
    rep = report()
    rep["totals"]["ok"] = 9
    assert not checks.tasks_answered_once(rep)["ok"]


def test_idle_worker_is_named() -> None:
    rep = report()
    rep["results_by_peer"] = {"198.18.1.3": 10}
    c = checks.every_worker_contributed(rep, inventory(), EXPECTED)
    assert not c["ok"] and "idle: c-b-0" in c["evidence"]


def test_contribution_not_required_with_fewer_tasks_than_workers() -> None:
    rep = report()
    rep["totals"]["tasks"] = 1
    rep["results_by_peer"] = {"198.18.1.3": 1}
    assert checks.every_worker_contributed(rep, inventory(), EXPECTED)["ok"]


@pytest.mark.parametrize(
    ("peer", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("198.18.1.2", "the master's own address"),
        ("198.18.1.99", "owned by no container"),
    ],
)
def test_results_from_the_wrong_place_fail(peer: str, why: str) -> None:
    rep = report()
    rep["results_by_peer"] = {"198.18.1.3": 6, peer: 4}
    c = checks.results_crossed_the_network(rep, inventory())
    assert not c["ok"] and why in c["evidence"] and "6/10 results" in c["evidence"]


def test_peer_counts_must_add_up_to_the_accepted_results() -> None:
    rep = report()
    rep["results_by_peer"] = {"198.18.1.3": 6}  # 4 results with no recorded peer
    assert not checks.results_crossed_the_network(rep, inventory())["ok"]


def test_a_hand_joined_container_counts_as_a_worker_address() -> None:
    inv = inventory()
    inv.others.append(
        ContainerInfo("tutorial", "t", "", "running", {"net-a": "198.18.1.50"}, managed=False)
    )
    rep = report()
    rep["results_by_peer"] = {"198.18.1.3": 6, "198.18.1.50": 4}
    assert checks.results_crossed_the_network(rep, inv)["ok"]
    assert checks.results_per_container(rep, inv) == {"c-a-0": 6, "tutorial": 4}


def test_claimed_local_ip_mismatch_is_shown() -> None:
    rep = report()
    rep["workers"][0]["identity"]["local_ip"] = "10.9.9.9"
    c = checks.results_crossed_the_network(rep, inventory())
    assert "claims 10.9.9.9, seen as 198.18.1.3" in c["evidence"]


def test_worker_in_the_master_namespace_fails() -> None:
    rep = report()
    rep["workers"][1]["identity"]["netns"] = "net:[1]"
    c = checks.separate_network_namespaces(rep, inventory())
    assert not c["ok"] and "in the master's namespace: b" in c["evidence"]


def test_shared_engine_sandbox_fails() -> None:
    inv = copy.deepcopy(inventory())
    inv.workers[0].sandbox = "sb-m"
    c = checks.separate_network_namespaces(report(), inv)
    assert not c["ok"] and "sharing a sandbox: c-master, c-a-0" in c["evidence"]


def test_isolation_fails_when_the_probe_gets_through() -> None:
    reached = ExecResult(0, "reachable 198.18.1.2:5000\n", "probe network 198.19.255.240/28")
    assert not checks.isolation(reached)["ok"]
    blocked = ExecResult(1, "unreachable 198.18.1.2:5000: timed out\n", "")
    assert checks.isolation(blocked)["ok"]


@pytest.mark.parametrize(
    ("code", "out"),
    [
        (125, ""),  # the probe container never started
        (2, "usage: python -m distproc probe ...\nerror: unrecognized arguments\n"),
        (137, "unreachable 198.18.1.2:5000: timed out\n"),  # killed (OOM) after one line
        (1, ""),  # no evidence at all
    ],
)
def test_isolation_fails_when_the_probe_proves_nothing(code: int, out: str) -> None:
    assert not checks.isolation(ExecResult(code, out, ""))["ok"]


def test_a_worker_gone_during_the_job_keeps_its_addresses() -> None:
    before = inventory()
    after = inventory()
    after.workers = after.workers[:1]  # c-b-0 stopped (SIGTERM) before the job ended
    merged = after.remember(before)
    assert merged.owner_of("198.18.2.3").name == "c-b-0"
    assert merged.workers[-1].state == "gone"
    assert all(c["ok"] for c in checks.job_checks(report(), merged, EXPECTED))
