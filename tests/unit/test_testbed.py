"""The test bed's parts that need no engine: the address plan, what ``up`` changes, the hosts
file, the keys and known_hosts, the ssh config and its wrapper, the state directory, the
machine image's recipe and debootstrap's progress. (tests/e2e/test_testbed_up.py brings the
machines up for real.)"""

from __future__ import annotations

import base64
import io
import ipaddress
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import paramiko
import pytest
import yaml

from orchestrate import cli, labels
from orchestrate.backends.docker_images import DebootstrapProgress
from orchestrate.testbed import hostsfile, image, plan
from orchestrate.testbed.bed import machine_inputs, payload
from orchestrate.testbed.engine import tar_of
from orchestrate.testbed.files import BedFiles, write
from orchestrate.testbed.keys import (
    known_hosts_text,
    new_keypair,
    read_keypair,
    real_ssh,
    ssh_config_text,
    ssh_wrapper_text,
)
from orchestrate.testbed.plan import Existing, reconcile

# -- the address plan -----------------------------------------------------------------------


def test_machines_have_fixed_names_addresses_and_roles() -> None:
    got = [(m.name, str(m.address), m.role, m.volume) for m in plan.machines(3)]
    assert got == [
        ("tb-1", "198.18.64.11", "manager", "tb-1-docker"),
        ("tb-2", "198.18.64.12", "worker", "tb-2-docker"),
        ("tb-3", "198.18.64.13", "worker", "tb-3-docker"),
    ]
    assert plan.machines(5)[:3] == plan.machines(3)  # growing keeps every address


@pytest.mark.parametrize("n", [0, -1, plan.MAX_HOSTS + 1])
def test_a_count_out_of_range_is_refused(n: int) -> None:
    with pytest.raises(plan.TestbedError, match=f"1 to {plan.MAX_HOSTS}"):
        plan.machines(n)


def test_every_machine_address_is_in_the_lan_and_not_the_gateway() -> None:
    for m in plan.machines(plan.MAX_HOSTS):
        assert m.address in plan.LAN and m.address != plan.LAN_GATEWAY


def test_the_subnets_are_disjoint_and_inside_the_reserved_block() -> None:
    nets = plan.subnets()
    assert set(nets) == {"lan", "inner_bip", "inner_pool", "swarm_pool", "overlays"}
    for name, net in nets.items():
        assert net.subnet_of(plan.BLOCK), name
        assert net.subnet_of(ipaddress.IPv4Network("198.18.0.0/15")), name
        # the model's reservation (no cluster network may overlap it) holds all but overlays
        assert net.subnet_of(plan.RESERVED) == (name != "overlays"), name
    assert plan.BLOCK.subnet_of(ipaddress.IPv4Network("198.18.64.0/18"))  # the project's
    items = list(nets.items())
    for i, (a, na) in enumerate(items):
        for b, nb in items[i + 1 :]:
            assert not na.overlaps(nb), (a, b)


@pytest.mark.parametrize(
    "used",
    # what the brief lists as taken: topologies, e2e, bench, the outer engine's pools, probes
    [
        "198.18.1.0/24",
        "198.18.5.0/24",
        "198.18.101.0/24",
        "198.18.132.0/24",
        "198.18.200.0/23",
        "198.18.235.0/24",
        "198.18.238.0/24",
        "198.19.0.0/16",
        "198.19.240.0/20",
    ],
)
def test_the_plan_avoids_the_subnets_already_used(used: str) -> None:
    assert not plan.BLOCK.overlaps(ipaddress.IPv4Network(used))


def test_the_inner_engine_config_is_the_plan() -> None:
    doc = json.loads(plan.daemon_json())
    assert doc["bip"] == plan.INNER_BIP
    assert doc["default-address-pools"] == [
        {"base": str(plan.INNER_POOL), "size": plan.INNER_POOL_SIZE}
    ]
    assert doc["storage-driver"] == "overlay2"


# -- what `up` changes ----------------------------------------------------------------------


def test_reconcile_creates_recreates_starts_keeps_and_removes() -> None:
    wanted = {"tb-1": "a", "tb-2": "b", "tb-3": "c", "tb-4": "d"}
    existing = {
        "tb-1": Existing("a", True),  # as wanted
        "tb-2": Existing("old", True),  # made of other inputs
        "tb-3": Existing("c", False),  # killed
        "tb-10": Existing("x", True),  # beyond N
        "tb-5": Existing("x", False),
    }
    a = reconcile(wanted, existing)
    assert (a.keep, a.recreate, a.start, a.create) == (["tb-1"], ["tb-2"], ["tb-3"], ["tb-4"])
    assert a.remove == ["tb-5", "tb-10"]  # in machine order, not string order
    assert not a.empty


def test_reconcile_of_the_wanted_test_bed_changes_nothing() -> None:
    wanted = {"tb-1": "a", "tb-2": "b"}
    a = reconcile(wanted, {n: Existing(i, True) for n, i in wanted.items()})
    assert a.empty and a.keep == ["tb-1", "tb-2"]


def test_a_machine_is_made_of_its_keys_image_and_address() -> None:
    m1, m2 = plan.machines(2)
    client, host, other = new_keypair("c"), new_keypair("h"), new_keypair("h2")
    base = machine_inputs("sha256:1", m1, payload(client, host))
    assert base == machine_inputs("sha256:1", m1, payload(client, host))
    assert base != machine_inputs("sha256:2", m1, payload(client, host))
    assert base != machine_inputs("sha256:1", m2, payload(client, host))
    assert base != machine_inputs("sha256:1", m1, payload(client, other))


# -- hosts.yaml -------------------------------------------------------------------------------


def test_the_hosts_file_is_the_agreed_format() -> None:
    text = hostsfile.render(plan.machines(3))
    assert text.startswith(hostsfile.HEADER + "\n")
    doc = yaml.safe_load(text)
    assert doc == {
        "hosts": [
            {
                "name": f"tb-{i}",
                "address": f"198.18.64.{10 + i}",
                "user": "root",
                "key_file": "id_ed25519",
                "known_hosts": "known_hosts",
                "role": "manager" if i == 1 else "worker",
                "labels": {"testbed": "true", "machine": f"tb-{i}"},
            }
            for i in (1, 2, 3)
        ]
    }
    assert "key_file: id_ed25519        # relative to this file" in text


def test_the_hosts_file_paths_are_the_state_files() -> None:
    files = BedFiles(Path("/x/testbed"))
    doc = yaml.safe_load(hostsfile.render(plan.machines(1)))["hosts"][0]
    assert files.hosts.parent / doc["key_file"] == files.key
    assert files.hosts.parent / doc["known_hosts"] == files.known_hosts


# -- keys, known_hosts, ssh config ------------------------------------------------------------


def test_a_new_key_pair_is_an_openssh_ed25519_key_paramiko_loads(tmp_path: Path) -> None:
    pair = new_keypair("who@where")
    assert pair.private.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    kind, blob, comment = pair.public.split()
    assert (kind, comment) == ("ssh-ed25519", "who@where")
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(pair.private.decode()))
    assert key.get_base64() == blob
    assert new_keypair("x").public_key != pair.public_key


def test_a_kept_key_is_read_back_and_its_public_half_derived(tmp_path: Path) -> None:
    files = BedFiles(tmp_path / "testbed")
    pair, created = files.keypair(files.key, "c")
    assert created
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    again, created = files.keypair(files.key, "c")
    assert (again, created) == (pair, False)
    files.key.with_name("id_ed25519.pub").write_text(new_keypair("c").public + "\n")
    assert read_keypair(files.key) == pair  # an edited .pub is not believed


def test_a_key_file_that_is_no_key_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("not a key")
    (tmp_path / "k.pub").write_text("ssh-ed25519 AAAA c")
    with pytest.raises(plan.TestbedError, match="not an unencrypted OpenSSH private key"):
        read_keypair(tmp_path / "k")


def test_known_hosts_names_each_machine_by_address_and_name_with_its_own_key(
    tmp_path: Path,
) -> None:
    ms = plan.machines(2)
    keys = [new_keypair(f"root@{m.name}") for m in ms]
    path = tmp_path / "known_hosts"
    path.write_text(known_hosts_text(zip(ms, keys, strict=True)))
    hosts = paramiko.HostKeys(str(path))
    for m, pair in zip(ms, keys, strict=True):
        key = paramiko.Ed25519Key.from_private_key(io.StringIO(pair.private.decode()))
        for name in (str(m.address), m.name):
            assert hosts.check(name, key), name
    other = paramiko.Ed25519Key.from_private_key(io.StringIO(keys[1].private.decode()))
    assert not hosts.check(str(ms[0].address), other)  # tb-2's key is not tb-1's
    assert hosts.lookup("198.18.64.99") is None


def test_the_ssh_config_names_the_key_and_known_hosts_and_checks_strictly() -> None:
    ms = plan.machines(2)
    files = BedFiles(Path("/state/testbed"))
    config = paramiko.SSHConfig.from_text(ssh_config_text(ms, files.key, files.known_hosts))
    for m in ms:
        for alias in (m.name, str(m.address)):
            got = config.lookup(alias)
            assert got["hostname"] == str(m.address)
            assert got["user"] == "root"
            assert got["identityfile"] == [str(files.key)]
            assert got["userknownhostsfile"] == str(files.known_hosts)
            assert got["stricthostkeychecking"] == "yes"
            assert got["identitiesonly"] == "yes"


def _fake_ssh(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "ssh"
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_the_wrapper_runs_the_real_ssh_with_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real process: the wrapper first in PATH, an ``ssh`` that prints its arguments
    after it; the wrapper must not find itself."""
    files = BedFiles(tmp_path / "testbed")
    real = _fake_ssh(tmp_path / "real", '#!/bin/sh\necho "$@"\n')
    monkeypatch.setenv("PATH", f"{files.bin}{os.pathsep}{real.parent}{os.pathsep}/usr/bin:/bin")
    write(files.bin / "ssh", ssh_wrapper_text("ssh", files.ssh_config).encode(), 0o755)
    assert real_ssh(files.bin) == str(real)
    write(files.bin / "ssh", ssh_wrapper_text(str(real), files.ssh_config).encode(), 0o755)
    out = subprocess.run(
        ["ssh", "-l", "root", "--", "198.18.64.11", "docker system dial-stdio"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    assert out.split() == [
        "-F", str(files.ssh_config), "-l", "root", "--", "198.18.64.11", "docker", "system",
        "dial-stdio",
    ]  # fmt: skip


def test_no_ssh_client_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert real_ssh(tmp_path / "bin") is None


# -- the state directory ----------------------------------------------------------------------


def test_write_reports_a_change_only_when_the_content_changes(tmp_path: Path) -> None:
    path = tmp_path / "d" / "f"
    assert write(path, b"a", 0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not write(path, b"a", 0o600)
    assert write(path, b"b", 0o600)
    assert path.read_bytes() == b"b"


def test_remove_takes_only_what_up_wrote(tmp_path: Path) -> None:
    files = BedFiles(tmp_path / "testbed")
    files.ensure_root()
    ms = plan.machines(2)
    files.keypair(files.key, "c")
    for m in ms:
        files.keypair(files.host_key(m.name), m.name)
    for path in (files.hosts, files.known_hosts, files.ssh_config, files.bin / "ssh"):
        write(path, b"x")
    removed = files.remove(ms[:1])  # the host key directory is listed: tb-2's goes too
    assert len(removed) == 10
    assert not files.root.exists()

    files.ensure_root()
    write(files.hosts, b"x")
    (files.root / "notes.txt").write_text("mine")
    assert files.remove() == [files.hosts]
    assert (files.root / "notes.txt").read_text() == "mine"


def test_the_state_directory_follows_distproc_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTPROC_STATE_DIR", str(tmp_path / "s"))
    assert BedFiles.default().hosts == tmp_path / "s" / "testbed" / "hosts.yaml"


# -- what a machine gets ----------------------------------------------------------------------


def test_the_payload_is_the_host_key_the_client_key_and_the_engine_config() -> None:
    client, host = new_keypair("c"), new_keypair("h")
    files = payload(client, host)
    assert files["/etc/ssh/ssh_host_ed25519_key"] == (host.private, 0o600)
    assert files["/root/.ssh/authorized_keys"] == ((client.public + "\n").encode(), 0o600)
    assert files["/etc/docker/daemon.json"] == (plan.daemon_json(), 0o644)
    with tarfile.open(fileobj=io.BytesIO(tar_of(files))) as tar:
        members = {i.name: i for i in tar.getmembers()}
    assert members["root/.ssh"].isdir() and members["root/.ssh"].mode == 0o700
    key = members["etc/ssh/ssh_host_ed25519_key"]
    assert (key.mode, key.uid, key.gid, key.size) == (0o600, 0, 0, len(host.private))
    assert "etc" not in members and "root" not in members  # never reset /etc's or /root's mode


# -- the machine image ------------------------------------------------------------------------


def test_the_image_tag_is_a_hash_of_its_inputs(tmp_path: Path) -> None:
    copy = tmp_path / "testbed"
    copy.mkdir()
    for name in image.FILES:
        (copy / name).write_bytes((image.MACHINE_DIR / name).read_bytes())
    assert image.input_hash(copy) == image.input_hash()
    spec = image.recipe(copy)
    assert spec.ref == f"{image.REPO}:{image.input_hash()}"
    assert f"{labels.TESTBED}=true" in spec.changes[-1]
    assert f"{labels.INPUTS}={image.input_hash()}" in spec.changes[-1]
    (copy / "start.sh").write_bytes(b"#!/bin/sh\nexit 1\n")
    assert image.input_hash(copy) != image.input_hash()


def test_the_image_keeps_no_host_key_and_has_what_a_machine_needs() -> None:
    spec = image.recipe()
    assert "etc/ssh/ssh_host_*" in spec.remove
    assert {"openssh-server", "docker.io", "iptables"} <= set(spec.include)
    assert spec.files[image.START][1] == 0o755
    assert f'"{image.START}"' in spec.changes[0]  # the entrypoint, under tini
    cmd = spec.command(Path("/r"))
    assert cmd[:2] == ["debootstrap", "--variant=minbase"] and cmd[-2:] == ["bookworm", "/r"]
    assert cmd[2] == "--include=" + ",".join(image.INCLUDE)


def test_debootstrap_progress_counts_four_steps_a_package() -> None:
    p = DebootstrapProgress(hint=3)
    assert not p.feed("I: Resolving dependencies of base packages...")
    assert (p.done, p.total) == (0, 12)
    for pkg in ("a", "b"):  # retrieved and validated one by one
        assert p.feed(f"I: Retrieving {pkg} 1.0")
        assert p.feed(f"I: Validating {pkg} 1.0")
    assert p.feed("I: Extracting a...")  # not shown, not counted
    assert (p.done, p.total) == (4, 12)  # still the hint: unpacking has not started
    for step in ("Unpacking", "Configuring"):
        for pkg in ("a", "b"):
            p.feed(f"I: {step} {pkg}...")
    assert (p.done, p.total) == (8, 8)  # exact now: 2 packages


# -- labels and the command line --------------------------------------------------------------


def test_testbed_objects_are_labelled_and_found_by_the_label_key() -> None:
    got = labels.for_testbed(labels.ROLE_TESTBED_MACHINE, machine="tb-1", inputs="h")
    assert got == {
        labels.MANAGED: "true",
        labels.TESTBED: "true",
        labels.ROLE: "testbed-machine",
        labels.MACHINE: "tb-1",
        labels.INPUTS: "h",
    }
    assert labels.testbed_filter() == {"label": ["io.distproc.testbed"]}
    assert labels.CLUSTER not in got  # a cluster's `down` never sweeps the test bed


@pytest.mark.parametrize("bad", ["0", "17", "x"])
def test_a_bad_hosts_count_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(["testbed", "up", "--hosts", bad])
    assert exit_info.value.code == cli.EXIT_CONFIG
    assert f"give 1 to {plan.MAX_HOSTS} machines" in capsys.readouterr().err


def test_the_testbed_commands_parse() -> None:
    args = cli.build_parser().parse_args(["testbed", "up"])
    assert (args.hosts, args.ready_timeout) == (plan.DEFAULT_HOSTS, plan.READY_TIMEOUT)
    assert cli.build_parser().parse_args(["testbed", "up", "--hosts", "2", "-v"]).hosts == 2
    assert cli.build_parser().parse_args(["testbed", "down", "--images"]).images
    assert cli.build_parser().parse_args(["testbed", "status", "--json"]).json


def test_the_key_comment_is_base64_clean() -> None:
    blob = new_keypair("c").public.split()[1]
    assert base64.b64decode(blob)[4:15] == b"ssh-ed25519"


# -- what the model reads ---------------------------------------------------------------------


def test_examples_swarm_yaml_loads_the_written_hosts_file(tmp_path: Path) -> None:
    """The agreed format, read by the model's own loader: examples/swarm.yaml beside a
    state directory as ``testbed up`` writes it (the key and known_hosts relative to it)."""
    from orchestrate.model import load_cluster

    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "examples").mkdir()
    example = tmp_path / "examples" / "swarm.yaml"
    example.write_text((repo / "examples" / "swarm.yaml").read_text())
    files = BedFiles(tmp_path / ".cluster" / "testbed")
    files.ensure_root()
    ms = plan.machines(3)
    files.keypair(files.key, "c")
    keys = {m.name: files.keypair(files.host_key(m.name), m.name)[0] for m in ms}
    write(files.known_hosts, known_hosts_text((m, keys[m.name]) for m in ms).encode())
    write(files.hosts, hostsfile.render(ms).encode())

    warnings: list = []
    cluster = load_cluster(str(example), warnings)
    got = [(h.name, h.address, h.user, h.role, h.labels) for h in cluster.hosts]
    assert got == [
        (m.name, str(m.address), "root", m.role, {"testbed": "true", "machine": m.name}) for m in ms
    ]
    assert {h.key_file for h in cluster.hosts} == {str(files.key)}
    assert {h.known_hosts for h in cluster.hosts} == {str(files.known_hosts)}
    assert not warnings, warnings
