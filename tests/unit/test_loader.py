"""Every configuration error is reported as ``file:line:col: message``, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrate.model import ConfigError, load_cluster, load_cluster_text, topology_warnings

FIXTURES = Path(__file__).parent / "fixtures" / "config"

# fixture -> every expected problem: (line, col, fragment of the message), or, for a problem
# in a file it includes, (that file relative to FIXTURES, line, col, fragment)
CASES: dict[str, list[tuple[int, int, str] | tuple[str, int, int, str]]] = {
    "alias_bomb": [(1, 1, "more than 100,000 values once aliases are expanded")],
    "control_character": [(2, 9, "unreadable character '\\x01'")],
    "too_deep": [(1, 1, "YAML nested too deeply")],
    "tab_indentation": [(7, 1, "YAML forbids tabs for indentation: indent with spaces")],
    "tab_after_colon": [(5, 12, "a tab where YAML expects spaces (YAML forbids tabs for")],
    "bad_backend": [(2, 10, "backend: must be 'local' or 'swarm', got 'kubernetes'")],
    "bad_cluster_name": [(2, 7, "'Demo_Cluster' is not a DNS label")],
    "bad_host_fields": [
        (5, 14, "hosts[0].address: 'fe80::1': IPv6 is not supported"),
        (6, 11, "hosts[0].user: 'deploy user' is not a user name"),
        (7, 11, "hosts[0].port: must be >= 1, got 0"),
        (8, 11, "hosts[0].role: must be 'manager' or 'worker', got 'leader'"),
        (9, 14, "hosts[0].labels: label key 'io.distproc.role': io.distproc.* is reserved"),
        (9, 46, "hosts[0].labels.zone: label value ' a': use printable ASCII without spaces"),
        (10, 11, "hosts[1].name: 'TB_2' is not a DNS label"),
        (11, 14, "'-bad-.example' is neither an IPv4 address nor a DNS name"),
        (12, 15, "hosts[1].key_file: must not be empty"),
    ],
    "bad_concurrency": [(12, 18, "concurrency: must be 'auto' or an integer >= 1, got 0")],
    "bad_kind": [(13, 9, "kind 'my-module:run' must be one of square, cpu, io or 'module:func")],
    "bad_memory": [(13, 15, "'lots' is not a size")],
    "bad_mode": [(12, 11, "mode: must be 'auto', 'inline', 'threads' or 'processes'")],
    "classic_non_square": [(14, 9, "classic protocol only supports kind 'square', not 'cpu'")],
    "container_name_too_long": [(9, 11, "would be 66 characters (max 63)")],
    "cpus_not_positive": [(12, 23, "cpus: must be >= 0.01, got 0")],
    "duplicate_group_name": [(12, 11, "duplicate worker group name 'alpha'")],
    "duplicate_host": [
        (5, 27, "hosts[1].address: address NODE1.example is also that of hosts[0] ('tb-1')"),
        (6, 12, "hosts[2].name: duplicate host name 'tb-1' (first used by hosts[0])"),
    ],
    "duplicate_key": [(11, 5, "duplicate key 'count' (first defined on line 10)")],
    "duplicate_network_name": [(6, 11, "duplicate network name 'net-a'")],
    "empty": [(1, 1, "the file is empty")],
    "hosts_on_local_backend": [
        (4, 3, "hosts: only backend swarm uses hosts; backend local (the default) runs every"),
        (6, 53, "networks[0].encrypted: encrypted is an overlay option (backend swarm)"),
        (9, 14, "master.placement: only backend swarm uses placement"),
        (13, 16, "workers[0].placement: only backend swarm uses placement"),
    ],
    "include_bad_spec": [(4, 37, "hosts: unknown key 'fil' (did you mean 'file'? allowed: file)")],
    "include_errors": [
        ("hosts/bad_hosts.yaml", 6, 20, "hosts[0].labels.fast: expected a string, got true"),
        ("hosts/bad_hosts.yaml", 8, 14, "hosts[1].address: '198.18.64.300' is not a valid IPv4"),
        ("hosts/bad_hosts.yaml", 9, 5, "hosts[1]: unknown key 'rol' (did you mean 'role'?"),
        ("hosts/bad_hosts.yaml", 13, 5, "duplicate key 'port' (first defined on line 12)"),
    ],
    "include_missing": [(5, 3, "hosts.file: cannot include ")],
    "include_testbed_missing": [
        (4, 9, "testbed/hosts.yaml: file not found (the test bed writes it: run `orchestrate te")
    ],
    "include_top_level": [
        ("hosts/top_level.yaml", 2, 1, "unknown key 'machines' (a hosts file holds `hosts:` only)"),
        ("hosts/top_level.yaml", 2, 1, "missing required key 'hosts'"),
    ],
    "memory_too_small": [(13, 15, "is too small: a Python process needs at least 32m")],
    "missing_key": [(4, 5, "networks[0]: missing required key 'subnet'")],
    "missing_master": [(2, 1, "missing required key 'master'")],
    "multiple_documents": [(3, 1, "expected a single document")],
    "multiple_problems": [
        (7, 13, "subnet 198.18.1.128/25 overlaps 198.18.1.0/24 of network 'net-a'"),
        (10, 9, "master.port: must be >= 1, got 0"),
        (13, 12, "workers[0].count: must be >= 0, got -2"),
        (14, 16, "network 'net-c' is not declared"),
        (17, 5, "duplicate key 'count'"),
        (19, 5, "workers[1]: unknown key 'colour'"),
    ],
    "negative_count": [(10, 12, "workers[0].count: must be >= 0, got -1")],
    "network_listed_twice": [(11, 23, "network 'net-a' is listed twice")],
    "no_networks": [(3, 11, "networks: must list at least 1 item")],
    "not_mapping": [(2, 1, "the top level must be a mapping, not a list")],
    "not_utf8": [(2, 10, "not UTF-8 text")],
    "overlapping_subnets": [(7, 13, "subnet 198.18.1.0/24 overlaps 198.18.0.0/16")],
    "pids_too_small": [(12, 23, "pids: must be >= 16, got 8")],
    "placement_empty": [
        (9, 16, "workers[0].placement: give hosts, labels or both"),
        (12, 17, "workers[1].placement: unknown key 'host' (did you mean 'hosts'?"),
    ],
    "placement_matches_no_host": [(11, 16, "placement: matches no host: none of tb-2 has zone=a")],
    "placement_unknown_host": [
        (11, 31, "workers[0].placement.hosts[1]: no host is called 'tb-9' (hosts: tb-1, tb-2)"),
        (11, 37, "workers[0].placement.hosts[2]: host 'tb-2' is listed twice"),
    ],
    "placement_unknown_label": [
        (7, 56, "master.placement.labels.disk: no host has disk=ssd (no host has a label disk)"),
        (11, 32, "workers[0].placement.labels.zone: no host has zone=c (zone on hosts: a, b)"),
    ],
    "port_out_of_range": [(8, 9, "master.port: must be <= 65535, got 70000")],
    "string_for_number": [(8, 9, "expected an integer, got '5000' (a string)")],
    "subnet_host_bits": [(5, 13, "has host bits set: the network address would be 198.18.1.0/24")],
    "subnet_ipv6": [(5, 13, "is IPv6: only IPv4 subnets are supported")],
    "subnet_malformed": [(5, 13, "'198.18.300.0/24' is not a valid IPv4 subnet")],
    "subnet_no_prefix": [(5, 13, "'198.18.1.0' is not a CIDR subnet")],
    "subnet_too_small": [(5, 13, "has room for 5 containers (8 addresses minus network")],
    "swarm_without_hosts": [(2, 10, "backend: swarm needs hosts: a list with at least one")],
    "swarm_without_manager": [(4, 3, "hosts: no host has role manager: a swarm needs one")],
    "testbed_subnet": [
        (7, 13, "subnet 198.18.66.0/24 overlaps 198.18.64.0/21, reserved for the test bed (its")
    ],
    "undeclared_network_master": [(7, 21, "network 'net-x' is not declared (declared: net-a)")],
    "undeclared_network_worker": [(11, 23, "network 'net-c' is not declared (declared: net-a)")],
    "unknown_key": [(10, 5, "unknown key 'cout' (did you mean 'count'?")],
    "unsupported_tag": [(2, 7, "unsupported YAML tag")],
    "wrong_type": [(10, 12, "workers[0].count: expected an integer, got 'two'")],
    "yaml_syntax": [(8, 8, "YAML syntax error: expected ',' or ']'")],
}


def test_every_fixture_has_a_case() -> None:
    assert sorted(p.stem for p in FIXTURES.glob("*.yaml")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_error_fixture(name: str) -> None:
    path = str(FIXTURES / f"{name}.yaml")
    with pytest.raises(ConfigError) as info:
        load_cluster(path)
    lines = str(info.value).splitlines()
    expected = CASES[name]
    assert len(lines) == len(expected), "\n".join(lines)
    for line, problem, case in zip(lines, info.value.problems, expected, strict=True):
        *included, row, col, fragment = case
        where = str(FIXTURES / included[0]) if included else path
        assert line.startswith(f"{where}:{row}:{col}: "), line
        assert fragment in line, f"expected {fragment!r} in {line!r}"
        assert (problem.file, problem.line, problem.col) == (where, row, col)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found"):
        load_cluster(path)


def test_path_is_reported_as_given() -> None:
    with pytest.raises(ConfigError) as info:
        load_cluster_text("name: [", "conf/my.yaml")
    assert str(info.value).startswith("conf/my.yaml:1:")


def test_merge_keys_are_not_duplicates() -> None:
    text = """\
name: x
networks: [{name: a, subnet: 198.18.0.0/24}]
master: {networks: [a], resources: &small {cpus: 0.5, memory: 64m}}
workers:
  - name: w
    networks: [a]
    resources: {<<: *small, cpus: 0.25}
"""
    cluster = load_cluster_text(text)
    assert cluster.workers[0].resources.cpus == 0.25
    assert cluster.workers[0].resources.memory == 64 * 1024 * 1024


def test_unreadable_value_is_reported_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_cluster_text(
            "name: !!python/name:os.system x\nnetworks: []\nmaster: {networks: [a]}\n"
        )
    messages = [p.message for p in info.value.problems]
    assert [m for m in messages if m.startswith("name")] == [
        "name: unsupported YAML tag 'tag:yaml.org,2002:python/name:os.system'"
    ]


def test_workers_off_the_master_network_are_a_warning_not_an_error() -> None:
    """Valid (up runs it and fails its checks, exit 3), but validate warns about it."""
    cluster = load_cluster_text(
        "name: demo\n"
        "networks: [{name: net-a, subnet: 198.18.1.0/24}, {name: net-b, subnet: 198.18.2.0/24}]\n"
        "master: {networks: [net-a]}\n"
        "workers: [{name: alpha, count: 2, networks: [net-b]}]\n"
    )
    [issue] = topology_warnings(cluster)
    assert issue.path == ("workers", 0, "networks")
    assert "shares no network with the master" in issue.message


def test_subnets_outside_the_test_range_and_no_workers_are_warnings() -> None:
    cluster = load_cluster_text(
        "name: demo\nnetworks: [{name: lan, subnet: 192.168.7.0/24}]\nmaster: {networks: [lan]}\n"
    )
    messages = [i.message for i in topology_warnings(cluster)]
    assert any("outside 198.18.0.0/15" in m for m in messages)
    assert "no workers: `up` runs no job" in messages
