"""Host keys are verified, never trusted silently: an in-process ssh server (paramiko's server
mode) on 127.0.0.1, and the connections ``orchestrate.remote`` makes to it."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import docker
import paramiko
import pytest
from docker.transport import SSHHTTPAdapter

from orchestrate import remote
from orchestrate.model.hosts import Host


class _Server(paramiko.ServerInterface):
    def __init__(self, allowed: paramiko.PKey) -> None:
        self.allowed = allowed

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == "root" and key.get_base64() == self.allowed.get_base64()
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[int, paramiko.PKey, Path]]:
    """A server with a host key of its own, accepting one client key; bounded to 20 accepts."""
    host_key = paramiko.Ed25519Key.from_private_key_file(_keygen(tmp_path / "host"))
    client_file = _keygen(tmp_path / "client")
    client_key = paramiko.Ed25519Key.from_private_key_file(str(client_file))
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    lsock.settimeout(10)
    transports: list[paramiko.Transport] = []

    def serve() -> None:
        for _ in range(20):
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            t = paramiko.Transport(conn)
            t.add_server_key(host_key)
            transports.append(t)
            try:
                t.start_server(server=_Server(client_key))
            except (paramiko.SSHException, EOFError, OSError):
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield lsock.getsockname()[1], host_key, client_file
    lsock.close()
    for t in transports:
        t.close()


def _keygen(stem: Path) -> Path:
    """An ed25519 key file (paramiko cannot write ed25519 keys: cryptography does)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    stem.write_bytes(pem)
    stem.chmod(0o600)
    return stem


def _host(port: int, key: Path, known: Path) -> Host:
    return Host(
        name="h1",
        address="127.0.0.1",
        port=port,
        user="root",
        key_file=str(key),
        known_hosts=str(known),
    )


def _known(path: Path, port: int, key: paramiko.PKey) -> Path:
    entries = paramiko.HostKeys()
    entries.add(f"[127.0.0.1]:{port}", key.get_name(), key)
    entries.save(str(path))
    return path


def test_a_host_whose_key_is_on_record_connects(sshd: tuple, tmp_path: Path) -> None:
    port, host_key, client_key = sshd
    known = _known(tmp_path / "known_hosts", port, host_key)
    client = remote.ssh_client(_host(port, client_key, known))
    assert client.get_transport() is not None and client.get_transport().is_authenticated()
    client.close()


def test_an_unknown_host_is_refused_not_added(sshd: tuple, tmp_path: Path) -> None:
    port, _, client_key = sshd
    known = tmp_path / "known_hosts"
    known.write_text("")
    with pytest.raises(remote.HostUnreachable, match=r"host key is not in .*--trust-new-hosts"):
        remote.ssh_client(_host(port, client_key, known))
    assert known.read_text() == ""  # nothing trusted behind the user's back


def test_a_changed_host_key_is_refused(sshd: tuple, tmp_path: Path) -> None:
    port, _, client_key = sshd
    other = paramiko.Ed25519Key.from_private_key_file(str(_keygen(tmp_path / "other")))
    known = _known(tmp_path / "known_hosts", port, other)
    with pytest.raises(remote.HostUnreachable, match="is not the one in"):
        remote.ssh_client(_host(port, client_key, known))


def test_fabric_connections_verify_too(sshd: tuple, tmp_path: Path) -> None:
    """Fabric's own default would accept this host (AutoAddPolicy, fabric#2071)."""
    port, _, client_key = sshd
    known = tmp_path / "known_hosts"
    known.write_text("")
    with pytest.raises(remote.HostUnreachable, match="host key is not in"):
        remote.connection(_host(port, client_key, known))


def test_trust_on_first_use_records_the_key_and_then_verifies_it(
    sshd: tuple, tmp_path: Path
) -> None:
    port, host_key, client_key = sshd
    known = tmp_path / "keys" / "known_hosts"
    host = _host(port, client_key, known)
    remote.ssh_client(host, trust_new=True).close()
    recorded = paramiko.HostKeys(str(known)).lookup(f"[127.0.0.1]:{port}")
    assert recorded is not None
    assert recorded[host_key.get_name()].get_base64() == host_key.get_base64()
    remote.ssh_client(host).close()  # and now without the flag


def test_a_wrong_client_key_is_a_plain_error(sshd: tuple, tmp_path: Path) -> None:
    port, host_key, _ = sshd
    known = _known(tmp_path / "known_hosts", port, host_key)
    wrong = _keygen(tmp_path / "wrong")
    with pytest.raises(remote.HostUnreachable, match="ssh refused the key"):
        remote.ssh_client(_host(port, wrong, known))


def test_nothing_listening_is_a_plain_error(tmp_path: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(remote.HostUnreachable, match="cannot connect over ssh"):
        remote.ssh_client(_host(port, tmp_path / "k", tmp_path / "kh"), timeout=2)


def test_the_sdk_transport_takes_our_ssh_client() -> None:
    """docker-py 7's SSHHTTPAdapter: ``_use_our_ssh`` relies on ``_custom_adapter``,
    ``ssh_client`` and ``ssh_params``; a pool made after it must use our client's
    transport. This fails when a docker-py release changes them."""
    client = docker.DockerClient(
        base_url="ssh://root@192.0.2.1:22", use_ssh_client=True, version=remote.API_VERSION
    )
    adapter = client.api._custom_adapter
    assert isinstance(adapter, SSHHTTPAdapter)
    marker = object()

    class Ours:
        def get_transport(self) -> object:
            return marker

    host = Host(name="h", address="192.0.2.1", user="root")
    remote._use_our_ssh(client, Ours(), host)  # type: ignore[arg-type]
    pool = adapter.get_connection("http+docker://ssh/v1.41/info")
    assert pool.ssh_transport is marker
    assert adapter.ssh_params["hostname"] == "192.0.2.1"
