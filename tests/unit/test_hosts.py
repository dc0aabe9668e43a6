"""Many machines in cluster.yaml: hosts (inline or included), placement, and their rules.

Errors of the rules are fixtures in test_loader.py (each at its file:line:col); here are the
model's values, what placement resolves to, the include's own file, warnings and the schema.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from orchestrate import graph
from orchestrate.cli import main
from orchestrate.model import (
    TESTBED_HOSTS_FILE,
    TESTBED_RESERVED,
    Cluster,
    ConfigError,
    Problem,
    cluster_json_schema,
    load_cluster,
    load_cluster_text,
)
from orchestrate.model.hosts import TESTBED_ENGINE_POOLS, TESTBED_LAN

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "config"
EXAMPLE = ROOT / "examples" / "swarm.yaml"

#: The hosts file as `orchestrate testbed up` writes it (the agreed format).
TESTBED_HOSTS = """\
# written by `orchestrate testbed up`: the test machines, for `hosts: {file: ...}`
hosts:
  - name: tb-1
    address: 198.18.64.11
    user: root
    key_file: id_ed25519        # relative to this file
    known_hosts: known_hosts    # relative to this file
    role: manager
    labels: {testbed: "true", machine: tb-1}
  - name: tb-2
    address: 198.18.64.12
    user: root
    key_file: id_ed25519
    known_hosts: known_hosts
    role: worker
    labels: {testbed: "true", machine: tb-2}
  - name: tb-3
    address: 198.18.64.13
    user: root
    key_file: id_ed25519
    known_hosts: known_hosts
    role: worker
    labels: {testbed: "true", machine: tb-3}
"""

SWARM = """\
name: demo
backend: swarm
hosts:
  - {name: m1, address: 198.18.64.11, role: manager, labels: {zone: a}}
  - {name: w1, address: w1.lab.example, labels: {zone: a, disk: SSD}}
  - {name: w2, address: 198.18.64.13, user: pi, port: 2222, labels: {zone: b}}
  - {name: m2, address: 198.18.64.14, role: manager, labels: {zone: b}}
networks: [{name: lan, subnet: 198.18.72.0/24, encrypted: true}]
master: {networks: [lan]}
workers:
  - {name: any, networks: [lan]}
  - {name: named, networks: [lan], placement: {hosts: [w2, w1]}}
  - {name: zoned, networks: [lan], placement: {labels: {zone: b}}}
  - {name: both, networks: [lan], placement: {hosts: [w1, m2], labels: {disk: ssd}}}
"""


@pytest.fixture
def testbed(tmp_path: Path) -> Path:
    """A checkout-like directory: examples/swarm.yaml and the test bed's hosts file."""
    (tmp_path / "examples").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "examples" / "swarm.yaml")
    hosts = tmp_path / TESTBED_HOSTS_FILE
    hosts.parent.mkdir(parents=True)
    hosts.write_text(TESTBED_HOSTS)
    for name in ("id_ed25519", "known_hosts"):
        (hosts.parent / name).write_text("")
    return tmp_path


def test_host_defaults_and_values() -> None:
    cluster = load_cluster_text(SWARM)
    m1, w1, w2, _ = cluster.hosts
    assert (m1.user, m1.port, m1.role, m1.key_file, m1.known_hosts) == (
        "root",
        22,
        "manager",
        None,
        None,
    )
    assert (w2.user, w2.port, w2.role) == ("pi", 2222, "worker")
    assert w1.address == "w1.lab.example" and w1.labels == {"zone": "a", "disk": "SSD"}
    assert cluster.networks[0].encrypted and not load_cluster_text(_local()).networks[0].encrypted
    assert [h.name for h in cluster.managers] == ["m1", "m2"]
    assert cluster.host("w2") is w2
    with pytest.raises(KeyError):
        cluster.host("nope")


def _local() -> str:
    return "name: x\nnetworks: [{name: a, subnet: 198.18.5.0/24}]\nmaster: {networks: [a]}\n"


def test_backend_defaults_to_local_without_hosts() -> None:
    cluster = load_cluster_text(_local())
    assert (cluster.backend, cluster.hosts) == ("local", [])
    assert cluster.master_hosts() == [] and list(cluster.iter_hosts()) == []


def test_placement_resolves_to_host_names() -> None:
    cluster = load_cluster_text(SWARM)

    def names(group: str) -> list[str]:
        return [h.name for h in cluster.group_hosts(group)]

    assert names("any") == ["m1", "w1", "w2", "m2"]  # no placement: anywhere
    assert names("named") == ["w1", "w2"]  # in file order, whatever the list's order
    assert names("zoned") == ["w2", "m2"]
    assert names("both") == ["w1"]  # named AND labelled; values as Swarm: SSD == ssd
    assert [h.name for h in cluster.master_hosts()] == ["m1"]  # default: the first manager
    plan = {p.host.name: (p.master, [g.name for g in p.groups]) for p in cluster.iter_hosts()}
    assert plan == {
        "m1": (True, ["any"]),
        "w1": (False, ["any", "named", "both"]),
        "w2": (False, ["any", "named", "zoned"]),
        "m2": (False, ["any", "zoned"]),
    }


def test_master_placement_overrides_the_first_manager() -> None:
    text = SWARM.replace(
        "master: {networks: [lan]}", "master: {networks: [lan], placement: {labels: {zone: b}}}"
    )
    cluster = load_cluster_text(text)
    assert [h.name for h in cluster.master_hosts()] == ["w2", "m2"]


def test_summary_names_backend_and_hosts() -> None:
    assert load_cluster_text(SWARM).summary() == (
        "cluster 'demo': 1 network, 1 master, 4 workers in 4 groups; "
        "swarm on 4 hosts (2 managers: m1, m2)"
    )
    assert "swarm" not in load_cluster_text(_local()).summary()


def test_key_files_are_absolute_relative_to_the_file_naming_them(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "c.yaml").write_text(
        SWARM.replace(
            "role: manager, labels: {zone: a}", "role: manager, key_file: keys/id"
        ).replace("user: pi,", "user: pi, known_hosts: /etc/ssh/kh, key_file: ~/.ssh/id_x,")
    )
    cluster = load_cluster(conf / "c.yaml")
    assert cluster.hosts[0].key_file == str(conf / "keys" / "id")
    assert cluster.hosts[2].known_hosts == "/etc/ssh/kh"
    assert cluster.hosts[2].key_file == str(Path("~/.ssh/id_x").expanduser())


def test_included_hosts_equal_inline_ones_with_paths_relative_to_the_hosts_file(
    testbed: Path,
) -> None:
    cluster = load_cluster(testbed / "examples" / "swarm.yaml")
    tb = testbed / TESTBED_HOSTS_FILE.parent
    assert [h.name for h in cluster.hosts] == ["tb-1", "tb-2", "tb-3"]
    assert {h.key_file for h in cluster.hosts} == {str(tb / "id_ed25519")}
    assert {h.known_hosts for h in cluster.hosts} == {str(tb / "known_hosts")}
    inline = yaml.safe_load((testbed / TESTBED_HOSTS_FILE).read_text())["hosts"]
    data = yaml.safe_load(EXAMPLE.read_text())
    data["hosts"] = inline
    (testbed / TESTBED_HOSTS_FILE.parent / "inline.yaml").write_text(yaml.safe_dump(data))
    assert load_cluster(testbed / TESTBED_HOSTS_FILE.parent / "inline.yaml") == cluster


def test_the_swarm_example_places_the_master_and_workers_apart(testbed: Path) -> None:
    warnings: list[Problem] = []
    cluster = load_cluster(testbed / "examples" / "swarm.yaml", warnings)
    assert warnings == []
    assert (cluster.name, cluster.backend) == ("distproc-swarm", "swarm")
    assert [n.subnet for n in cluster.networks] == ["198.18.72.0/24", "198.18.73.0/24"]
    master = {h.name for h in cluster.master_hosts()}
    assert master == {"tb-1"}
    for group in cluster.workers:  # results cross machines: no worker can run by the master
        assert {h.name for h in cluster.group_hosts(group)} == {"tb-2", "tb-3"}
    # the default topology, moved: same groups, counts and job as cluster.yaml
    default = load_cluster(ROOT / "cluster.yaml")
    assert [(g.name, g.count, g.networks) for g in cluster.workers] == [
        (g.name, g.count, g.networks) for g in default.workers
    ]
    assert cluster.job == default.job


def test_the_swarm_example_without_a_test_bed_says_what_to_run(tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    shutil.copy(EXAMPLE, tmp_path / "examples" / "swarm.yaml")
    with pytest.raises(ConfigError) as info:
        load_cluster(tmp_path / "examples" / "swarm.yaml")
    [problem] = info.value.problems
    assert problem.file == str(tmp_path / "examples" / "swarm.yaml")
    assert problem.message.startswith(f"hosts.file: cannot include {tmp_path}/.cluster/testbed/")
    assert "run `orchestrate testbed up` first" in problem.message


@pytest.mark.parametrize(
    ("content", "line", "col", "fragment"),
    [
        ("hosts:\n\t- name: a\n", 2, 1, "YAML forbids tabs"),
        ("hosts: [{name: a, address: a.example, role: manager, name: b}]\n", 1, 54, "duplicate"),
        ((FIXTURES / "alias_bomb.yaml").read_text(), 1, 1, "more than 100,000 values"),
        ("hosts: [{role: manager, address: a, name: !!python/name:os.system a}]\n", 1, 43, "tag"),
        ("- just a list\n", 1, 1, "the top level must be a mapping holding `hosts:`"),
        ("# nothing\n", 1, 1, "the file is empty"),
        (b"hosts:\n  - name: \xff\n", 2, 11, "not UTF-8 text"),
    ],
)
def test_an_included_file_is_read_as_safely_as_the_main_one(
    tmp_path: Path, content: str | bytes, line: int, col: int, fragment: str
) -> None:
    hosts = tmp_path / "h.yaml"
    if isinstance(content, bytes):
        hosts.write_bytes(content)
    else:
        hosts.write_text(content)
    main = tmp_path / "c.yaml"
    main.write_text(SWARM.split("hosts:\n")[0] + "hosts: {file: h.yaml}\n" + _rest_of_swarm())
    with pytest.raises(ConfigError) as info:
        load_cluster(main)
    first = info.value.problems[0]
    assert (first.file, first.line, first.col) == (str(hosts), line, col), info.value
    assert fragment in first.message
    assert all(p.file == str(hosts) for p in info.value.problems), info.value


def _rest_of_swarm() -> str:
    """SWARM after its hosts, with placements that name no host of an included file."""
    rest = SWARM.split("networks:", 1)[1]
    return "networks:" + rest.split("workers:")[0]


def test_hosts_as_a_mapping_without_file_is_explained() -> None:
    text = SWARM.split("hosts:\n")[0] + "hosts: {tb-1: {address: 1.2.3.4}}\n" + _rest_of_swarm()
    with pytest.raises(ConfigError) as info:
        load_cluster_text(text, "c.yaml")
    assert [str(p) for p in info.value.problems] == [
        "c.yaml:3:8: hosts: expected a list of hosts, or {file: PATH} to include a hosts file"
    ]


def test_a_hosts_file_cannot_include_another(tmp_path: Path) -> None:
    (tmp_path / "h.yaml").write_text("hosts: {file: other.yaml}\n")
    main = tmp_path / "c.yaml"
    main.write_text(SWARM.split("hosts:\n")[0] + "hosts: {file: h.yaml}\n" + _rest_of_swarm())
    with pytest.raises(ConfigError) as info:
        load_cluster(main)
    assert [str(p) for p in info.value.problems] == [
        f"{tmp_path}/h.yaml:1:8: hosts: expected a list, got a mapping"
    ]


def test_a_later_problem_at_a_host_names_the_included_file(testbed: Path) -> None:
    """What the swarm backend reports about a host (cluster.problem) points at its line."""
    cluster = load_cluster(testbed / "examples" / "swarm.yaml")
    problem = cluster.problem(("hosts", 1, "address"), "unreachable")
    assert (problem.file, problem.line, problem.col) == (str(testbed / TESTBED_HOSTS_FILE), 11, 14)
    assert str(problem).endswith("hosts[1].address: unreachable")


def test_missing_key_files_are_a_warning_once_each(testbed: Path) -> None:
    (testbed / TESTBED_HOSTS_FILE.parent / "id_ed25519").unlink()
    warnings: list[Problem] = []
    load_cluster(testbed / "examples" / "swarm.yaml", warnings)
    hosts = str(testbed / TESTBED_HOSTS_FILE)
    assert [(w.file, w.line, w.col) for w in warnings] == [(hosts, 6, 15)]
    assert "id_ed25519 does not exist (yet)" in warnings[0].message


def test_workers_only_beside_the_master_are_a_warning() -> None:
    text = (
        SWARM.split("workers:")[0]
        + "workers: [{name: w, networks: [lan], placement: {hosts: [m1]}}]\n"
    )
    warnings: list[Problem] = []
    load_cluster_text(text, "c.yaml", warnings)
    assert [str(w) for w in warnings] == [
        "c.yaml:10:10: workers: every worker runs where the master does (m1): "
        "no result crosses machines"
    ]


def test_a_local_subnet_in_the_test_bed_range_is_a_warning() -> None:
    warnings: list[Problem] = []
    load_cluster_text(_local().replace("198.18.5.0/24", "198.18.64.0/24"), "c.yaml", warnings)
    assert any("reserved for the test bed" in w.message for w in warnings)


def test_the_reservation_is_one_range() -> None:
    assert next(TESTBED_RESERVED.subnets(new_prefix=24)) == TESTBED_LAN
    assert [str(n) for n in TESTBED_ENGINE_POOLS] == [f"198.18.{i}.0/24" for i in range(65, 72)]
    assert all(n.subnet_of(TESTBED_RESERVED) for n in (TESTBED_LAN, *TESTBED_ENGINE_POOLS))


def test_graph_draws_pinned_parts_inside_their_host(testbed: Path) -> None:
    cluster = load_cluster(testbed / "examples" / "swarm.yaml")
    text = graph.mermaid(cluster)
    box = text.split('subgraph host__tb_1["tb-1<br/>198.18.64.11 (manager)"]\n')[1].split("end")[0]
    assert "distproc-swarm-master" in box and "worker" not in box
    assert text.count("on tb-2, tb-3") == 4 and text.count(" --- ") == 6
    assert 'subgraph "cluster_host:tb-1"' in graph.dot(cluster)


def test_validate_prints_the_hosts(testbed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-f", str(testbed / "examples" / "swarm.yaml")]) == 0
    assert "; swarm on 3 hosts (1 manager: tb-1)" in capsys.readouterr().err


def test_json_dump_round_trips() -> None:
    cluster = load_cluster_text(SWARM)
    assert Cluster.model_validate(cluster.model_dump(mode="json")) == cluster


def test_schema_describes_and_accepts_both_forms_of_hosts(testbed: Path) -> None:
    schema = cluster_json_schema()
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(yaml.safe_load(EXAMPLE.read_text()))  # {file: ...}
    validator.validate(yaml.safe_load(SWARM))  # a list
    host = schema["$defs"]["Host"]["properties"]
    assert set(host) == {
        "name",
        "address",
        "user",
        "port",
        "key_file",
        "known_hosts",
        "role",
        "labels",
    }
    assert all(p.get("description") for p in host.values())
    assert schema["properties"]["backend"]["enum"] == ["local", "swarm"]
    assert "description" in schema["$defs"]["Network"]["properties"]["encrypted"]
    assert "placement" in schema["$defs"]["WorkerGroup"]["properties"]
    assert "placement" in schema["$defs"]["Master"]["properties"]


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["hosts"][0].update(role="leader"),
        lambda d: d["hosts"][0].update(colour="blue"),
        lambda d: d["hosts"][0]["labels"].update(zone=1),
        lambda d: d.update(hosts={"file": "h.yaml", "also": 1}),
        lambda d: d.update(backend="k8s"),
        lambda d: d["workers"][1]["placement"].update(zones=["a"]),
        lambda d: d["networks"][0].update(encrypted="yes"),
    ],
)
def test_schema_rejects_what_the_model_rejects(change) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(SWARM)
    change(data)
    validator = jsonschema.Draft202012Validator(json.loads(json.dumps(cluster_json_schema())))
    assert not validator.is_valid(data)
    with pytest.raises(ConfigError):
        load_cluster_text(yaml.safe_dump(data))
