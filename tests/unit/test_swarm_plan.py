"""What ``provision`` would do against a given state of the hosts (``hosts.plan``), and the
service specs the swarm backend makes from the model (``backends.swarm.specs``): pure, no
engine, no ssh."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrate import labels
from orchestrate.backends.swarm import specs
from orchestrate.hosts.plan import HostState, NodeState, PlanError, node_labels, plan
from orchestrate.model import Host, load_cluster_text

HOSTS = [
    Host(name="tb-1", address="198.18.64.11", role="manager"),
    Host(name="tb-2", address="198.18.64.12", labels={"zone": "a"}),
    Host(name="tb-3", address="198.18.64.13", labels={"zone": "b"}),
]
IMAGE = "sha256:" + "ab" * 32


def _formed(images: frozenset[str] = frozenset()) -> tuple[dict, dict]:
    """The state ``provision`` leaves: one swarm, tb-1 managing, every node labelled."""
    states = {
        "tb-1": HostState("active", "n1", True, "c1", images),
        "tb-2": HostState("active", "n2", False, "", images),
        "tb-3": HostState("active", "n3", False, "", images),
    }
    nodes = {f"n{i}": NodeState(f"n{i}", h.role, node_labels(h)) for i, h in enumerate(HOSTS, 1)}
    return states, nodes


def _kinds(actions: list) -> list[tuple[str, str]]:
    return [(a.kind, a.host) for a in actions]


def test_fresh_hosts_get_init_join_labels_and_images() -> None:
    states = {h.name: HostState() for h in HOSTS}
    actions = plan(HOSTS, states, {}, [IMAGE])
    assert _kinds(actions) == [
        ("init", "tb-1"), ("label", "tb-1"), ("ship", "tb-1"),
        ("join", "tb-2"), ("label", "tb-2"), ("ship", "tb-2"),
        ("join", "tb-3"), ("label", "tb-3"), ("ship", "tb-3"),
    ]  # fmt: skip
    label = next(a for a in actions if a.kind == "label" and a.host == "tb-2")
    assert dict(label.labels) == {"zone": "a", labels.HOST: "tb-2", labels.MANAGED: "true"}
    assert next(a for a in actions if a.host == "tb-3" and a.kind == "ship").images == (IMAGE,)


def test_a_provisioned_swarm_plans_nothing() -> None:
    """Idempotence: what provision leaves, a second provision does not touch."""
    states, nodes = _formed(frozenset({IMAGE}))
    assert plan(HOSTS, states, nodes, [IMAGE]) == []


def test_only_what_is_missing_is_planned() -> None:
    states, nodes = _formed(frozenset({IMAGE}))
    states["tb-3"] = HostState()  # left the swarm, and lost the image
    del nodes["n3"]
    nodes["n2"] = NodeState("n2", "worker", {labels.HOST: "tb-2"})  # lost its zone label
    assert _kinds(plan(HOSTS, states, nodes, [IMAGE])) == [
        ("label", "tb-2"), ("join", "tb-3"), ("label", "tb-3"), ("ship", "tb-3"),
    ]  # fmt: skip


def test_a_role_that_differs_from_the_file_is_changed() -> None:
    states, nodes = _formed()
    nodes["n2"] = NodeState("n2", "manager", node_labels(HOSTS[1]))
    assert [a.describe() for a in plan(HOSTS, states, nodes)] == ["role tb-2: demote to worker"]


def test_a_host_of_another_swarm_is_not_taken_over() -> None:
    states, nodes = _formed()
    states["tb-3"] = HostState("active", "x9", False, "")  # a node id the swarm does not list
    with pytest.raises(PlanError, match=r"tb-3 belong.*another swarm.*hosts leave"):
        plan(HOSTS, states, nodes)


def test_managers_of_two_swarms_are_refused() -> None:
    hosts = [*HOSTS[:1], Host(name="tb-4", address="198.18.64.14", role="manager")]
    states = {
        "tb-1": HostState("active", "n1", True, "c1"),
        "tb-4": HostState("active", "n4", True, "c2"),
    }
    with pytest.raises(PlanError, match="manage different swarms"):
        plan(hosts, states, {})


def test_a_node_stuck_joining_needs_a_person() -> None:
    states, nodes = _formed()
    states["tb-2"] = HostState("pending", "n2")
    with pytest.raises(PlanError, match=r"tb-2 \(pending\)"):
        plan(HOSTS, states, nodes)


# -- the services ----------------------------------------------------------------------------

SWARM = """\
name: sw
backend: swarm
hosts:
  - {name: tb-1, address: 198.18.64.11, role: manager}
  - {name: tb-2, address: 198.18.64.12, labels: {zone: a}}
  - {name: tb-3, address: 198.18.64.13, labels: {zone: b}}
networks:
  - {name: a, subnet: 198.18.72.0/24}
  - {name: b, subnet: 198.18.73.0/24}
master: {networks: [a, b], resources: {pids: 300}}
workers:
  - {name: alpha, count: 2, networks: [a], placement: {hosts: [tb-2, tb-3]}}
  - {name: beta, count: 1, networks: [b], placement: {labels: {zone: b}}, mode: threads}
"""
NETS = {"a": "net-a-id", "b": "net-b-id"}
SECRET = ("secret-id", "sw-authkey-r1")


def _cluster():
    return load_cluster_text(SWARM)


def test_worker_names_are_the_task_slots() -> None:
    assert specs.worker_names(_cluster()) == ["sw-alpha-1", "sw-alpha-2", "sw-beta-1"]


def test_placement_becomes_constraints_that_admit_exactly_its_hosts() -> None:
    c = _cluster()
    host = f"node.labels.{labels.HOST}"
    assert specs.constraints(c, c.master_hosts()) == [f"{host}==tb-1"]
    assert specs.constraints(c, c.group_hosts("alpha")) == [
        f"node.labels.{labels.MANAGED}==true",
        f"{host}!=tb-1",
    ]
    assert specs.constraints(c, c.group_hosts("beta")) == [f"{host}==tb-3"]


def test_the_master_service_is_hardened_and_gets_the_key_as_a_secret_file() -> None:
    c = _cluster()
    svc = specs.master_service(c, "r1", "sha256:m", "sha256:w", SECRET, NETS)
    template = svc["task_template"]
    spec = template["ContainerSpec"]
    assert svc["name"] == "sw-master" and svc["mode"]["replicated"]["Replicas"] == 1
    assert svc["endpoint_spec"]["Mode"] == "dnsrr"  # no IPVS needed
    assert spec["Image"] == "sha256:m" and spec["Args"][:1] == ["master"]
    assert spec["ReadOnly"] is True and spec["Init"] is True
    assert spec["CapabilityDrop"] == ["ALL"] and not spec["User"].startswith("0:")
    assert spec["Env"] == [f"DISTPROC_AUTHKEY_FILE={specs.KEY_IN_CONTAINER}"]
    secret = spec["Secrets"][0]
    assert secret["SecretID"] == "secret-id" and secret["File"]["Mode"] == 0o400
    assert template["Resources"]["Limits"]["Pids"] == 300
    assert [n["Target"] for n in template["Networks"]] == ["net-a-id", "net-b-id"]
    assert template["Placement"]["Constraints"] == [f"node.labels.{labels.HOST}==tb-1"]
    assert svc["labels"][labels.ROLE] == labels.ROLE_MASTER
    assert svc["labels"][labels.WORKER_IMAGE] == "sha256:w"


def test_a_worker_group_service_names_its_tasks_by_slot() -> None:
    c = _cluster()
    svc = specs.worker_service(c, c.group("beta"), "r1", "sha256:w", SECRET, NETS)
    spec = svc["task_template"]["ContainerSpec"]
    assert svc["name"] == "sw-beta" and svc["mode"]["replicated"]["Replicas"] == 1
    assert spec["Hostname"] == "{{.Service.Name}}-{{.Task.Slot}}"
    assert "--name" not in spec["Args"]  # the worker takes its hostname
    assert spec["Args"][:3] == ["worker", "--master", "sw-master:5000"]
    assert spec["Args"][-2:] == ["--mode", "threads"]
    assert svc["task_template"]["RestartPolicy"]["Condition"] == "any"


def test_no_key_material_in_any_spec(tmp_path: Path) -> None:
    c = _cluster()
    text = repr(specs.master_service(c, "r1", "i", "i", SECRET, NETS)) + repr(
        specs.worker_service(c, c.group("alpha"), "r1", "i", SECRET, NETS)
    )
    assert "authkey-r1" in text  # the secret is named ...
    assert "DISTPROC_AUTHKEY=" not in text  # ... never its value
