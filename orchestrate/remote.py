"""Reaching a host of ``hosts:`` over ssh: fabric for commands, the Docker SDK for its engine.

Both verify the host's key against the host's ``known_hosts`` file with paramiko's
``RejectPolicy``: an unknown or changed key is an error, never trusted silently. Fabric's
own default is ``AutoAddPolicy``, which accepts any host on first sight (fabric#2071), so
every connection made here replaces it. Trust on first use exists only behind an explicit
flag (``trust_new``), and then the key it saw is written into the known_hosts file, so the
next connection verifies against it.

The Docker SDK's own ssh transport reads only ``~/.ssh/config`` and ``~/.ssh/known_hosts``;
``engine()`` gives it a paramiko client made here instead (``_use_our_ssh``, the one place
that touches the SDK's transport internals, with a test that fails when they change).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import docker
import paramiko
from fabric import Connection

from .backends.base import EngineError
from .model.hosts import Host

#: The Engine API version spoken to remote engines: Docker 20.10's, which newer engines also
#: serve. Fixed, so that making a client asks nothing of the host ("auto" would, before our
#: ssh client is in place).
API_VERSION = "1.41"
CONNECT_TIMEOUT = 10.0


class HostUnreachable(EngineError):
    """A host could not be reached over ssh, or its key was not the one on record."""


class _RecordNewKeys(paramiko.MissingHostKeyPolicy):
    """Trust on first use, and write what was trusted into ``path`` (``--trust-new-hosts``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: Any) -> None:
        entries = paramiko.HostKeys()
        if self.path.exists():
            entries.load(str(self.path))
        entries.add(hostname, key.get_name(), key)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entries.save(str(self.path))
        client.get_host_keys().add(hostname, key.get_name(), key)


def known_hosts_of(host: Host) -> Path:
    """The file ``host``'s key is checked against (``~/.ssh/known_hosts`` if none is set)."""
    return Path(host.known_hosts or Path.home() / ".ssh" / "known_hosts")


def _connect_kwargs(host: Host, timeout: float) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "timeout": timeout,
        "banner_timeout": timeout,
        "auth_timeout": timeout,
    }
    if host.key_file:
        # only the key named: no agent, no ~/.ssh keys tried first (each failed try counts
        # against sshd's MaxAuthTries)
        kwargs.update(key_filename=host.key_file, look_for_keys=False, allow_agent=False)
    return kwargs


def _apply_policy(client: paramiko.SSHClient, host: Host, trust_new: bool) -> None:
    path = known_hosts_of(host)
    if path.exists():
        client.load_host_keys(str(path))
    client.set_missing_host_key_policy(
        _RecordNewKeys(path) if trust_new else paramiko.RejectPolicy()
    )


def _explain(host: Host, exc: BaseException) -> HostUnreachable:
    where = f"{host.name} ({host.user}@{host.address}:{host.port})"
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostUnreachable(
            f"{where}: its host key is not the one in {known_hosts_of(host)}: someone may be "
            "in the middle, or the host was reinstalled; check, then fix that file"
        )
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return HostUnreachable(
            f"{where}: its host key is not in {known_hosts_of(host)}: add it (ssh-keyscan, "
            "checked against the host), or trust it once with --trust-new-hosts"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        key = host.key_file or "ssh's default keys"
        return HostUnreachable(f"{where}: ssh refused the key ({key}): {exc}")
    if isinstance(exc, OSError | socket.timeout | paramiko.SSHException):
        return HostUnreachable(f"{where}: cannot connect over ssh: {exc or type(exc).__name__}")
    return HostUnreachable(f"{where}: {type(exc).__name__}: {exc}")


def ssh_client(
    host: Host, timeout: float = CONNECT_TIMEOUT, trust_new: bool = False
) -> paramiko.SSHClient:
    """A connected paramiko client for ``host``, its key verified (see the module docstring).
    Raises ``HostUnreachable`` with what to do."""
    client = paramiko.SSHClient()
    _apply_policy(client, host, trust_new)
    try:
        client.connect(host.address, host.port, host.user, **_connect_kwargs(host, timeout))
    except Exception as exc:  # paramiko's and the socket's errors, each explained
        client.close()
        raise _explain(host, exc) from None
    return client


def connection(host: Host, timeout: float = CONNECT_TIMEOUT, trust_new: bool = False) -> Connection:
    """A fabric ``Connection`` to ``host`` whose host key is verified: fabric's
    ``AutoAddPolicy`` replaced before it connects. Opened at once, so that an unreachable host
    raises ``HostUnreachable`` here, not at the first ``run``."""
    conn = Connection(
        host.address,
        user=host.user,
        port=host.port,
        connect_kwargs=_connect_kwargs(host, timeout),  # its timeout: connect_timeout
    )
    _apply_policy(conn.client, host, trust_new)
    try:
        conn.open()
    except Exception as exc:
        conn.close()
        raise _explain(host, exc) from None
    return conn


#: Connections the SDK keeps open per engine. Each is an ssh session on the host (``docker
#: system dial-stdio``), and sshd serves 10 per connection by default (MaxSessions): with
#: the SDK's 10, ``status`` asked while a job streamed from the same node failed to open a
#: channel 4 times in 40 (a chaos scenario asks it so); with 4, 3 times; with 2, never.
SSH_POOL = 2


def engine(host: Host, timeout: float = 120.0) -> docker.DockerClient:
    """The Docker SDK's client for ``host``'s engine, over ssh with ``ssh_client``'s checks
    (the API runs through ``docker system dial-stdio`` on the host: its docker CLI must be
    installed, as the Docker packages do)."""
    client = docker.DockerClient(
        base_url=f"ssh://{host.user}@{host.address}:{host.port}",
        use_ssh_client=True,  # builds the transport without connecting: ours goes in below
        version=API_VERSION,
        timeout=int(timeout),
        max_pool_size=SSH_POOL,
    )
    _use_our_ssh(client, ssh_client(host), host)
    return client


def _use_our_ssh(client: docker.DockerClient, ssh: paramiko.SSHClient, host: Host) -> None:
    """Put our verified paramiko client into the SDK's ssh transport (docker-py 7's
    ``SSHHTTPAdapter``: with ``ssh_client`` set it opens its channels on that client, and
    reconnects with ``ssh_params``). The SDK has no public way to choose the known_hosts
    file or the key; tests/unit/test_remote.py fails if these attributes change."""
    adapter = client.api._custom_adapter  # the SSHHTTPAdapter mounted for ssh://
    adapter.ssh_client = ssh
    adapter.ssh_params = {
        "hostname": host.address,
        "port": host.port,
        "username": host.user,
        **_connect_kwargs(host, CONNECT_TIMEOUT),
    }


def alive(client: docker.DockerClient) -> bool:
    """Whether a client from ``engine()`` still has its ssh session (a machine that died
    leaves a client whose every call fails with "SSH session not active")."""
    transport = client.api._custom_adapter.ssh_client.get_transport()  # see _use_our_ssh
    return transport is not None and transport.is_active()
