"""The default topology, the model's helpers and the JSON schema."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from orchestrate.model import (
    Cluster,
    ConfigError,
    cluster_json_schema,
    cluster_json_schema_text,
    format_bytes,
    load_cluster,
    load_cluster_text,
    parse_memory,
    topology_problems,
)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "cluster.yaml"
SCHEMA = ROOT / "cluster.schema.json"
MINIMAL = """\
name: mini
networks: [{name: lan, subnet: 198.18.5.0/28}]
master: {networks: [lan]}
workers: [{name: w, networks: [lan]}]
"""


@pytest.fixture(scope="module")
def default() -> Cluster:
    return load_cluster(DEFAULT)


def test_default_topology(default: Cluster) -> None:
    assert default.name == "distproc"
    assert [n.name for n in default.networks] == ["net-a", "net-b"]
    assert default.total_workers == 4
    assert default.master_name == "distproc-master"
    assert default.worker_names() == [
        "distproc-alpha-0",
        "distproc-alpha-1",
        "distproc-beta-0",
        "distproc-beta-1",
    ]
    assert default.containers_on("net-a") == [
        "distproc-master",
        "distproc-alpha-0",
        "distproc-alpha-1",
    ]
    assert default.containers_on("net-b")[1:] == ["distproc-beta-0", "distproc-beta-1"]
    assert {default.attached_count(n.name) for n in default.networks} == {3}
    # the two groups are on different subnets, so tasks cross two networks
    assert {tuple(g.networks) for g in default.workers} == {("net-a",), ("net-b",)}
    assert all(n.internal for n in default.networks)
    assert default.job.protocol == "leased" and default.job.kind == "cpu"
    assert topology_problems(default) == []


def test_default_subnets_are_for_testing(default: Cluster) -> None:
    testing = ipaddress.ip_network("198.18.0.0/15")
    assert all(n.network.subnet_of(testing) for n in default.networks)


def test_iter_workers_and_lookups(default: Cluster) -> None:
    slots = list(default.iter_workers())
    assert [(s.group.name, s.index) for s in slots][:2] == [("alpha", 0), ("alpha", 1)]
    assert default.network("net-b").subnet == "198.18.2.0/24"
    assert default.group("beta").count == 2
    with pytest.raises(KeyError):
        default.network("nope")
    with pytest.raises(KeyError):
        default.group("nope")
    assert default.summary() == "cluster 'distproc': 2 networks, 1 master, 4 workers in 2 groups"


def test_defaults() -> None:
    cluster = load_cluster_text(MINIMAL)
    group = cluster.workers[0]
    assert (group.count, group.concurrency, group.mode) == (1, "auto", "auto")
    assert cluster.master.port == 5000
    res = cluster.master.resources
    assert (res.cpus, res.memory, res.pids, res.nano_cpus) == (1.0, 256 << 20, 256, 10**9)
    assert cluster.job.protocol == "leased" and cluster.job.max_attempts == 3
    assert cluster.images.base == "auto" and cluster.auth.key_file is None
    net = cluster.networks[0]
    assert (str(net.gateway), net.capacity) == ("198.18.5.1", 13)


def test_model_is_immutable() -> None:
    cluster = load_cluster_text(MINIMAL)
    with pytest.raises(ValueError):
        cluster.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("256m", 256 << 20),
        ("1g", 1 << 30),
        ("1.5GiB", 3 << 29),
        ("64m", 64 << 20),
        (1 << 26, 1 << 26),
    ],
)
def test_parse_memory(text: str | int, size: int) -> None:
    assert parse_memory(text) == size


def test_format_bytes() -> None:
    assert [format_bytes(n) for n in (256 << 20, 1 << 30, 1536)] == ["256m", "1g", "1536b"]


def test_json_dump_round_trips(default: Cluster) -> None:
    dumped = default.model_dump(mode="json")
    assert Cluster.model_validate(dumped) == default


def test_committed_schema_is_current() -> None:
    assert SCHEMA.read_text(encoding="utf-8") == cluster_json_schema_text(), (
        "cluster.schema.json is stale: run `orchestrate schema --write`"
    )


def test_schema_validates_default_cluster_yaml() -> None:
    schema = cluster_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    data = yaml.safe_load(DEFAULT.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(data)


def test_schema_rejects_what_the_model_rejects() -> None:
    data = yaml.safe_load(MINIMAL)
    data["workers"][0]["cout"] = 1
    validator = jsonschema.Draft202012Validator(json.loads(cluster_json_schema_text()))
    assert not validator.is_valid(data)
    with pytest.raises(ConfigError):
        load_cluster_text(yaml.safe_dump(data))
