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


# -- a check with nothing to judge is skipped, never passed ---------------------------------


def test_check_has_one_shape_and_ok_means_not_failed() -> None:
    for status, ok in (("pass", True), ("fail", False), ("skipped", True)):
        c = checks.check("x", status, "why")
        assert c == {"name": "x", "status": status, "ok": ok, "evidence": "why"}
    with pytest.raises(ValueError):
        checks.check("x", "passed", "")  # type: ignore[arg-type]


def test_good_and_bad_evidence_say_pass_and_fail() -> None:
    assert {c["status"] for c in checks.job_checks(report(), inventory(), EXPECTED)} == {"pass"}
    rep = report()
    rep["totals"]["ok"] = 9
    assert checks.tasks_answered_once(rep)["status"] == "fail"


def test_readiness_with_no_workers_to_wait_for_is_skipped() -> None:
    c = checks.workers_connected([], set(), 0.1)
    assert c["status"] == "skipped" and c["ok"] and "no workers" in c["evidence"]


def test_contribution_with_no_cluster_workers_is_skipped() -> None:
    """Before: a pass whose evidence was "" or began with "; joined by hand"."""
    for inv in (inventory(), Inventory("c")):
        c = checks.every_worker_contributed(report(), inv, [])
        assert c["status"] == "skipped" and c["evidence"] and not c["evidence"].startswith(";")


def test_contribution_not_required_is_skipped_not_passed() -> None:
    rep = report()
    rep["totals"]["tasks"] = 1
    rep["results_by_peer"] = {"198.18.1.3": 1}
    c = checks.every_worker_contributed(rep, inventory(), EXPECTED)
    assert c["status"] == "skipped" and "not required" in c["evidence"]


def test_namespaces_with_no_workers_at_all_are_skipped() -> None:
    rep = report()
    rep["workers"] = []
    inv = inventory()
    inv.workers = []
    c = checks.separate_network_namespaces(rep, inv)
    assert c["status"] == "skipped" and "no workers" in c["evidence"]


def _empty_job() -> dict[str, Any]:
    rep = report()
    rep["totals"] = {"tasks": 0, "ok": 0, "failed": 0, "dead": 0, "duplicates": 0}
    rep["results_by_peer"] = {}
    return rep


def test_a_job_with_no_tasks_judges_nothing() -> None:
    answered = checks.tasks_answered_once(_empty_job())
    crossed = checks.results_crossed_the_network(_empty_job(), inventory())
    assert answered["status"] == crossed["status"] == "skipped"
    assert "no tasks" in answered["evidence"] and "no tasks" in crossed["evidence"]


def test_a_job_with_no_tasks_still_fails_on_the_master_own_failed_check() -> None:
    rep = _empty_job()
    rep["checks"][0]["ok"] = False
    assert checks.tasks_answered_once(rep)["status"] == "fail"


def test_isolation_with_nothing_to_probe_is_skipped() -> None:
    from orchestrate.cluster import ClusterRun
    from orchestrate.events import NullEvents
    from orchestrate.model import load_cluster_text

    cluster = load_cluster_text(
        "name: c\nnetworks: [{name: lan, subnet: 198.18.5.0/28}]\nmaster: {networks: [lan]}\n"
    )
    run = ClusterRun(cluster, None, NullEvents())  # type: ignore[arg-type]
    assert run.isolation("r", None)["status"] == "skipped"


def test_skipped_prints_skip_and_json_keeps_the_status() -> None:
    from rich.console import Console

    from orchestrate.cluster import Outcome
    from orchestrate.ui import print_checks

    out = Outcome([checks.check("a", "pass", "e1"), checks.check("b", "skipped", "no workers")])
    console = Console(record=True, width=200, no_color=True)
    print_checks(console, out.checks)
    text = console.export_text()
    assert "PASS a: e1" in text and "SKIP b: no workers" in text and "PASS b" not in text
    assert [c["status"] for c in out.as_json()["checks"]] == ["pass", "skipped"]
    assert out.ok and out.failed() == []
