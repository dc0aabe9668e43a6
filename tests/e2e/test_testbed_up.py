"""The test bed for real: ``orchestrate testbed up --hosts 3`` on the engine, each machine
reached from the host by ssh with the written known_hosts (OpenSSH, strict) and by paramiko
(``RejectPolicy``), its own engine checked, the Docker SDK over ssh, then ``testbed down``
leaves nothing labelled ``io.distproc.testbed``.

The tests run in this file's order on one test bed (a module fixture): ``up`` again, a killed
machine, fewer machines, then ``down``. The test bed's names and subnet are fixed, so a test
bed already up fails the fixture (run ``orchestrate testbed down``); run under
``flock /tmp/distproc-engine.lock``.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import paramiko
import pytest
import yaml
from e2e_harness import ARTIFACTS, orchestrate

from orchestrate import labels

pytestmark = pytest.mark.swarm

HOSTS = 3
SSH_TIMEOUT = 30
#: A container image made inside a machine from its own tini-static: proves the inner
#: engine runs containers (runc, cgroups, overlay2) with no registry and no big transfer.
TINY = "distproc-testbed-tiny:1"
MAKE_TINY = (
    "tar -C / -c usr/bin/tini-static | docker import "
    """-c 'ENTRYPOINT ["/usr/bin/tini-static", "--version"]' - """ + TINY
)


@dataclass
class Bed:
    state: Path
    up: subprocess.CompletedProcess

    @property
    def dir(self) -> Path:
        return self.state / "testbed"

    def hosts(self) -> list[dict[str, Any]]:
        return yaml.safe_load((self.dir / "hosts.yaml").read_text())["hosts"]

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return orchestrate("testbed", *args, state=self.state, timeout=timeout)


def _labelled(client: docker.DockerClient) -> list[str]:
    flt = labels.testbed_filter()
    found = [f"container {c.name}" for c in client.containers.list(all=True, filters=flt)]
    found += [f"volume {v.name}" for v in client.volumes.list(filters=flt)]
    return found + [f"network {n.name}" for n in client.networks.list(filters=flt)]


def _save_logs(client: docker.DockerClient) -> None:
    out = ARTIFACTS / "testbed"
    out.mkdir(parents=True, exist_ok=True)
    flt = labels.testbed_filter(labels.ROLE_TESTBED_MACHINE)
    for c in client.containers.list(all=True, filters=flt):
        (out / f"{c.name}.log").write_bytes(c.logs())


@pytest.fixture(scope="module")
def bed(
    engine: None, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Bed]:
    client = docker.from_env()
    already = _labelled(client)
    if already:
        pytest.fail(
            f"a test bed is already up ({', '.join(already)}): these tests bring their own up "
            "and take it down; run `orchestrate testbed down` first"
        )
    state = tmp_path_factory.mktemp("testbed-state")
    failed_before = request.session.testsfailed
    res = orchestrate("testbed", "up", "--hosts", str(HOSTS), state=state, timeout=900)
    try:
        yield Bed(state, res)
    finally:
        if request.session.testsfailed > failed_before or res.returncode != 0:
            _save_logs(client)
            (ARTIFACTS / "testbed" / "up.stderr").write_text(res.stderr)
        orchestrate("testbed", "down", state=state, timeout=300)


def _paramiko(bed: Bed, host: dict[str, Any], known_hosts: Path) -> paramiko.SSHClient:
    """A connection as hosts.yaml describes it: the key and known_hosts relative to the
    file, RejectPolicy for any host key known_hosts does not list."""
    ssh = paramiko.SSHClient()
    ssh.load_host_keys(str(known_hosts))
    ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
    ssh.connect(
        host["address"],
        username=host["user"],
        key_filename=str(bed.dir / host["key_file"]),
        look_for_keys=False,
        allow_agent=False,
        timeout=SSH_TIMEOUT,
        banner_timeout=SSH_TIMEOUT,
        auth_timeout=SSH_TIMEOUT,
    )
    return ssh


def _run(ssh: paramiko.SSHClient, command: str) -> str:
    _, out, err = ssh.exec_command(command, timeout=SSH_TIMEOUT)
    code = out.channel.recv_exit_status()
    text = out.read().decode()
    assert code == 0, f"{command}: exit {code}: {err.read().decode()}"
    return text.strip()


def _openssh(bed: Bed, target: str, command: str, *options: str) -> subprocess.CompletedProcess:
    ssh = shutil.which("ssh")
    assert ssh, "no OpenSSH client on this host (.ci/run installs openssh-client)"
    return subprocess.run(
        [ssh, "-F", str(bed.dir / "ssh_config"), "-o", "StrictHostKeyChecking=yes", *options,
         target, command],
        capture_output=True,
        text=True,
        timeout=SSH_TIMEOUT,
    )  # fmt: skip


def test_up_brings_every_machine_up_and_writes_the_hosts_file(bed: Bed) -> None:
    assert bed.up.returncode == 0, bed.up.stderr
    assert f"test bed: {HOSTS} machines ready" in bed.up.stderr, bed.up.stderr
    hosts = bed.hosts()
    assert [(h["name"], h["address"], h["role"]) for h in hosts] == [
        ("tb-1", "198.18.64.11", "manager"),
        ("tb-2", "198.18.64.12", "worker"),
        ("tb-3", "198.18.64.13", "worker"),
    ]
    res = bed.cli("status", "--json")
    assert res.returncode == 0, res.stderr
    machines = json.loads(res.stdout)["machines"]
    assert [(m["name"], m["state"]) for m in machines] == [(h["name"], "running") for h in hosts]
    assert all(m["engine"] for m in machines), machines


def test_openssh_with_the_written_known_hosts_runs_docker_on_each_machine(bed: Bed) -> None:
    for host in bed.hosts():
        for target in (host["name"], f"root@{host['address']}"):
            res = _openssh(bed, target, "hostname; docker version --format '{{.Server.Version}}'")
            assert res.returncode == 0, res.stderr
            name, version = res.stdout.split()
            assert name == host["name"] and version[0].isdigit(), res.stdout


def test_paramiko_with_reject_policy_reaches_each_inner_engine(bed: Bed) -> None:
    for host in bed.hosts():
        with _paramiko(bed, host, bed.dir / host["known_hosts"]) as ssh:
            assert _run(ssh, "hostname") == host["name"]
            assert _run(ssh, "docker info --format '{{.Name}} {{.Driver}}'") == (
                f"{host['name']} overlay2"
            )
            bridge = _run(ssh, "docker network inspect bridge --format '{{json .IPAM.Config}}'")
            assert '"Subnet":"198.18.65.0/24"' in bridge, bridge


def test_a_machine_whose_key_is_not_in_known_hosts_is_refused(bed: Bed, tmp_path: Path) -> None:
    """The check can fail: tb-1 listed with tb-2's key (what a machine impersonating tb-1
    would show), and a known_hosts without tb-1."""
    hosts = bed.hosts()
    lines = (bed.dir / "known_hosts").read_text().splitlines()
    tb2_key = lines[1].split(None, 1)[1]
    swapped = tmp_path / "swapped"
    swapped.write_text("\n".join([f"{lines[0].split()[0]} {tb2_key}", *lines[1:]]) + "\n")
    without = tmp_path / "without"
    without.write_text("\n".join(lines[1:]) + "\n")

    with pytest.raises(paramiko.BadHostKeyException):
        _paramiko(bed, hosts[0], swapped)
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        _paramiko(bed, hosts[0], without)
    for bad in (swapped, without):
        res = _openssh(bed, "tb-1", "true", "-o", f"UserKnownHostsFile={bad}")
        assert res.returncode == 255, (bad.name, res)
        assert "Host key verification failed" in res.stderr, res.stderr
    with _paramiko(bed, hosts[1], swapped) as ssh:  # tb-2 itself is still tb-2
        assert _run(ssh, "hostname") == "tb-2"


def test_the_docker_sdk_runs_a_container_on_a_machine_over_ssh(
    bed: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``docker.DockerClient(base_url="ssh://...", use_ssh_client=True)`` runs ``ssh`` from
    PATH: the test bed's ``bin/ssh`` (ssh -F ssh_config) first."""
    host = bed.hosts()[0]
    monkeypatch.setenv("PATH", f"{bed.dir / 'bin'}:{os.environ['PATH']}")
    with _paramiko(bed, host, bed.dir / "known_hosts") as ssh:
        _run(ssh, MAKE_TINY)
    client = docker.DockerClient(
        base_url=f"ssh://root@{host['address']}", use_ssh_client=True, timeout=60
    )
    try:
        assert client.info()["Name"] == host["name"]
        # detached, then wait and logs: `run` without detach streams the logs, and that
        # response keeps an ssh connection open past close() (docker-py 7.x)
        container = client.containers.run(TINY, detach=True, network_mode="none")
        assert container.wait(timeout=SSH_TIMEOUT)["StatusCode"] == 0
        assert b"tini version" in container.logs()
        container.remove()
    finally:
        # With use_ssh_client, docker-py keeps none of its connection pools (each request
        # gets a new one), so close() closes none: they close when collected. Collect them
        # while the machine is up, or they close at exit into an ended ssh (BrokenPipeError
        # in sshconn's close, as in docker-py#3218).
        client.close()
        del client
        gc.collect()


def test_up_again_changes_nothing(bed: Bed) -> None:
    client = docker.from_env()
    flt = labels.testbed_filter(labels.ROLE_TESTBED_MACHINE)
    before = {c.name: c.id for c in client.containers.list(all=True, filters=flt)}
    files = {p: p.read_bytes() for p in bed.dir.rglob("*") if p.is_file()}
    res = bed.cli("up", "--hosts", str(HOSTS))
    assert res.returncode == 0, res.stderr
    assert "(nothing changed)" in res.stderr, res.stderr
    assert {c.name: c.id for c in client.containers.list(all=True, filters=flt)} == before
    assert {p: p.read_bytes() for p in bed.dir.rglob("*") if p.is_file()} == files


def test_a_killed_machine_is_started_again_by_up(bed: Bed) -> None:
    client = docker.from_env()
    client.containers.get("tb-3").kill()
    res = bed.cli("up", "--hosts", str(HOSTS))
    assert res.returncode == 0, res.stderr
    assert "started tb-3" in res.stderr, res.stderr
    host = bed.hosts()[2]
    with _paramiko(bed, host, bed.dir / "known_hosts") as ssh:
        assert _run(ssh, "docker version --format '{{.Server.Version}}'")


def test_fewer_hosts_removes_the_last_machine_and_its_volume(bed: Bed) -> None:
    res = bed.cli("up", "--hosts", "2")
    assert res.returncode == 0, res.stderr
    assert "removed tb-3" in res.stderr, res.stderr
    client = docker.from_env()
    assert [h["name"] for h in bed.hosts()] == ["tb-1", "tb-2"]
    assert len((bed.dir / "known_hosts").read_text().splitlines()) == 2
    left = _labelled(client)
    assert "container tb-3" not in left and "volume tb-3-docker" not in left, left
    assert "container tb-2" in left and "volume tb-2-docker" in left, left


def test_down_leaves_nothing_labelled_and_no_state_file(bed: Bed) -> None:
    res = bed.cli("down")
    assert res.returncode == 0, res.stderr
    assert "removed 2 containers, 2 volumes, 1 network" in res.stderr, res.stderr
    assert _labelled(docker.from_env()) == []
    assert not bed.dir.exists(), list(bed.dir.rglob("*"))
    again = bed.cli("down")
    assert again.returncode == 0 and "nothing to remove" in again.stderr, again.stderr


def test_a_name_held_by_something_else_is_refused_before_anything_is_made(bed: Bed) -> None:
    client = docker.from_env()
    volume = client.volumes.create("tb-2-docker", labels={labels.TEST: "e2e"})
    try:
        res = bed.cli("up", "--hosts", "2")
        assert res.returncode == 1, res.stderr
        assert "a volume named tb-2-docker exists and is not the test bed's" in res.stderr
        assert _labelled(client) == []
        assert not bed.dir.exists()
    finally:
        volume.remove(force=True)
