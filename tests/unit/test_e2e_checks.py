"""Each end-to-end check passes on good evidence and fails on the bad evidence it exists for."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from distproc.ledger import Ledger
from distproc.report import Check, Report, build
from distproc.spec import JobSpec

from orchestrate import checks
from orchestrate.backends.base import ContainerInfo, ExecResult, Inventory, NetworkInfo
from orchestrate.cluster import parse_report


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


@dataclass
class Rec:
    """What ``build`` reads of a registered worker."""

    wid: str
    identity: dict[str, Any] = field(default_factory=dict)


WORKERS = [
    Rec("a", {"local_ip": "198.18.1.3", "netns": "net:[2]"}),
    Rec("b", {"local_ip": "198.18.2.3", "netns": "net:[3]"}),
]


def _through_json(job: Ledger, workers: list[Rec] = WORKERS) -> Report:
    """The report as orchestrate gets it: built by the master, sent as JSON, parsed once."""
    built = build(job, copy.deepcopy(workers), {"netns": "net:[1]"})
    return parse_report(json.dumps(built.to_dict()))


def report() -> Report:
    """A real job: 10 square tasks, 6 from a on net-a, 4 from b on net-b, one duplicate."""
    job = Ledger("j", JobSpec(kind="square", tasks=10, batch=10), list(range(10)))
    job.lease(0, 6)
    job.lease(1, 4)
    job.accept(0, "198.18.1.3", [(t, t * t) for t in range(6)])
    job.accept(1, "198.18.2.3", [(t, t * t) for t in range(6, 10)] + [(9, 81)])
    return _through_json(job)


def test_the_fixture_is_a_real_good_report() -> None:
    rep = report()
    assert rep.ok and rep.totals.ok == 10 and rep.totals.duplicates == 1
    assert rep.results_by_peer == {"198.18.1.3": 6, "198.18.2.3": 4}


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
    rep.checks = [
        Check(c.name, "fail", "something is off") if c.name == broken else c for c in rep.checks
    ]
    c = checks.tasks_answered_once(rep)
    assert not c["ok"] and f"{broken}: something is off" in c["evidence"]


def test_answers_fail_when_tasks_are_missing() -> None:
    rep = report()
    rep.totals.ok = 9
    assert not checks.tasks_answered_once(rep)["ok"]


def test_idle_worker_is_named() -> None:
    rep = report()
    rep.results_by_peer = {"198.18.1.3": 10}
    c = checks.every_worker_contributed(rep, inventory(), EXPECTED)
    assert not c["ok"] and "idle: c-b-0" in c["evidence"]


def test_contribution_not_required_with_fewer_tasks_than_workers() -> None:
    rep = report()
    rep.totals.tasks = 1
    rep.results_by_peer = {"198.18.1.3": 1}
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
    rep.results_by_peer = {"198.18.1.3": 6, peer: 4}
    c = checks.results_crossed_the_network(rep, inventory())
    assert not c["ok"] and why in c["evidence"] and "6/10 results" in c["evidence"]


def test_peer_counts_must_add_up_to_the_accepted_results() -> None:
    rep = report()
    rep.results_by_peer = {"198.18.1.3": 6}  # 4 results with no recorded peer
    assert not checks.results_crossed_the_network(rep, inventory())["ok"]


def test_a_hand_joined_container_counts_as_a_worker_address() -> None:
    inv = inventory()
    inv.others.append(
        ContainerInfo("tutorial", "t", "", "running", {"net-a": "198.18.1.50"}, managed=False)
    )
    rep = report()
    rep.results_by_peer = {"198.18.1.3": 6, "198.18.1.50": 4}
    assert checks.results_crossed_the_network(rep, inv)["ok"]
    assert checks.results_per_container(rep, inv) == {"c-a-0": 6, "tutorial": 4}


def test_claimed_local_ip_mismatch_is_shown() -> None:
    rep = report()
    rep.workers[0].identity["local_ip"] = "10.9.9.9"
    c = checks.results_crossed_the_network(rep, inventory())
    assert "claims 10.9.9.9, seen as 198.18.1.3" in c["evidence"]


def test_worker_in_the_master_namespace_fails() -> None:
    rep = report()
    rep.workers[1].identity["netns"] = "net:[1]"
    c = checks.separate_network_namespaces(rep, inventory())
    assert not c["ok"] and "in the master's namespace: b" in c["evidence"]


def test_shared_engine_sandbox_fails() -> None:
    inv = copy.deepcopy(inventory())
    inv.workers[0].sandbox = "sb-m"
    c = checks.separate_network_namespaces(report(), inv)
    assert not c["ok"] and "sharing a sandbox: c-master, c-a-0" in c["evidence"]


def _on_machines(master: str, a0: str, b0: str) -> Inventory:
    inv = copy.deepcopy(inventory())
    assert inv.master is not None
    inv.master.node, inv.workers[0].node, inv.workers[1].node = master, a0, b0
    return inv


def test_a_namespace_is_the_same_only_on_the_same_machine() -> None:
    """Namespace ids are per kernel: on other machines, worker a's ``net:[1]`` and the
    master's ``net:[1]`` (and equal sandbox ids) are different namespaces; on the master's
    machine they are the same one."""
    rep = report()
    rep.workers[0].identity["netns"] = "net:[1]"  # the master's id
    inv = _on_machines("m1", "m2", "m3")
    inv.workers[0].sandbox = inv.workers[1].sandbox = "sb-m"  # the master's sandbox id too
    c = checks.separate_network_namespaces(rep, inv)
    assert c["ok"], c
    assert "on 3 machines" in c["evidence"]
    same_machine = _on_machines("m1", "m1", "m3")
    same_machine.workers[0].sandbox = "sb-m"
    c = checks.separate_network_namespaces(rep, same_machine)
    assert not c["ok"] and "in the master's namespace: a" in c["evidence"]
    assert "sharing a sandbox: c-master, c-a-0" in c["evidence"]


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
    rep.totals.ok = 9
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
    rep.totals.tasks = 1
    rep.results_by_peer = {"198.18.1.3": 1}
    c = checks.every_worker_contributed(rep, inventory(), EXPECTED)
    assert c["status"] == "skipped" and "not required" in c["evidence"]


def test_namespaces_with_no_workers_at_all_are_skipped() -> None:
    rep = report()
    rep.workers = []
    inv = inventory()
    inv.workers = []
    c = checks.separate_network_namespaces(rep, inv)
    assert c["status"] == "skipped" and "no workers" in c["evidence"]


def _empty_job() -> Report:
    return _through_json(Ledger("j", JobSpec(tasks=0), []))


def test_a_job_with_no_tasks_judges_nothing() -> None:
    answered = checks.tasks_answered_once(_empty_job())
    crossed = checks.results_crossed_the_network(_empty_job(), inventory())
    assert answered["status"] == crossed["status"] == "skipped"
    assert "no tasks" in answered["evidence"] and "no tasks" in crossed["evidence"]


def test_a_job_with_no_tasks_still_fails_on_the_master_own_failed_check() -> None:
    rep = _empty_job()
    rep.checks[0] = Check(rep.checks[0].name, "fail", "0/1 ids in a final state")
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


# -- a custom kind's values are nobody's to check: the pass says so --------------------------


def test_a_custom_kind_passes_and_says_values_not_checked() -> None:
    """The master skips ``values_correct`` for a custom kind; a pass must not hide that."""
    kind = "distproc_kinds.chaos:poison"
    job = Ledger("j", JobSpec(kind=kind, tasks=4, batch=4), list(range(4)))
    job.lease(0, 4)
    job.accept(0, "198.18.1.3", [(t, "anything") for t in range(4)])
    rep = _through_json(job)
    assert rep.check("values_correct").status == "skipped"  # type: ignore[union-attr]
    c = checks.tasks_answered_once(rep)
    assert c["status"] == "pass", c["evidence"]
    assert f"values not checked: custom kind {kind}" in c["evidence"]
    assert "values not checked" not in checks.tasks_answered_once(report())["evidence"]


# -- the report enters orchestrate once, typed; a report that is not ours is a clear error --


def _good_dict() -> dict[str, Any]:
    return report().to_dict()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"hello": 1}', "missing key 'totals'"),
        (json.dumps({**_good_dict(), "colour": "red"}), r"unknown keys \['colour'\]"),
        ("[1, 2]", "a JSON list, not an object"),
        ("Traceback (most recent call last):", "Expecting value"),
        (
            json.dumps(_good_dict()).replace('"status": "pass"', '"status": "passed"', 1),
            "status must be one of",
        ),
        (
            json.dumps(_good_dict()).replace('"status": "pass"', '"status": "fail"', 1),
            "contradicts 'fail'",
        ),
    ],
)
def test_output_that_is_not_our_report_is_a_clear_job_failure(text: str, why: str) -> None:
    from orchestrate.cluster import JobFailed

    with pytest.raises(JobFailed, match=f"not a distproc report \\(.*{why}"):
        parse_report(text)


def test_a_foreign_report_from_the_master_fails_the_job_not_with_a_traceback(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through ``ClusterRun.job``, where the report enters: an ``OrchestrateError`` (which
    the CLI prints as one line, exit 1), not a TypeError from deep in a check."""
    from orchestrate.cluster import ClusterRun, JobFailed
    from orchestrate.events import NullEvents
    from orchestrate.model import OrchestrateError, load_cluster_text

    monkeypatch.setenv("DISTPROC_STATE_DIR", str(tmp_path))

    class Foreign:
        def inventory(self, name: str) -> Inventory:
            return inventory()

        def control(self, name: str, argv: list[str], on_line: Any = None) -> ExecResult:
            return ExecResult(0, json.dumps({"status": "done", "count": 10}), "")

    cluster = load_cluster_text(
        "name: c\nnetworks: [{name: lan, subnet: 198.18.5.0/28}]\nmaster: {networks: [lan]}\n"
    )
    run = ClusterRun(cluster, Foreign(), NullEvents())  # type: ignore[arg-type]
    with pytest.raises(JobFailed, match="not a distproc report") as err:
        run.job(timeout=5)
    assert isinstance(err.value, OrchestrateError)
    assert not (tmp_path / "c" / "last-report.json").exists()  # not saved as a report


def test_contribution_is_required_only_from_a_few_tasks_per_worker() -> None:
    """4 tasks on 4 workers left one idle in 3 of 9 correct runs: a failure that proved
    nothing. Below SHARE_EVERY_WORKER_FROM tasks a worker it is skipped; from it, judged."""
    rep = report()
    rep.results_by_peer = {"198.18.1.3": 7}
    rep.totals.tasks = checks.SHARE_EVERY_WORKER_FROM * len(EXPECTED) - 1
    assert checks.every_worker_contributed(rep, inventory(), EXPECTED)["status"] == "skipped"
    rep.totals.tasks += 1
    c = checks.every_worker_contributed(rep, inventory(), EXPECTED)
    assert c["status"] == "fail" and "idle: c-b-0" in c["evidence"]


def test_namespaces_nobody_reported_are_skipped_unless_the_engine_shows_sharing() -> None:
    """A job of no tasks: no worker reported its namespace, so only the engine's side was
    seen; that used to be a pass."""
    rep = report()
    rep.workers = []
    c = checks.separate_network_namespaces(rep, inventory())
    assert c["status"] == "skipped" and "no worker reported" in c["evidence"]
    inv = inventory()
    inv.workers[1].sandbox = inv.workers[0].sandbox
    assert checks.separate_network_namespaces(rep, inv)["status"] == "fail"
