"""Key pairs, known_hosts and the ssh client config of the test bed: generated here, never
learnt from the network.

Keys are ed25519 in OpenSSH format (what ``ssh-keygen -t ed25519`` writes), made with
``cryptography`` (paramiko's own dependency), so that no ``ssh-keygen`` is needed on the host.
The client key logs in to every machine; each machine has its own host key, delivered into
its container before sshd starts; ``known_hosts`` lists exactly those host keys, so that
OpenSSH (``StrictHostKeyChecking yes``) and paramiko (``RejectPolicy``) accept the machines
and nothing else at their addresses.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .plan import SSH_USER, Machine, TestbedError


@dataclass(frozen=True)
class KeyPair:
    """An ed25519 key pair: the private key in OpenSSH PEM, the public one as one line
    (``ssh-ed25519 AAAA... comment``)."""

    private: bytes
    public: str

    @property
    def public_key(self) -> str:
        """``ssh-ed25519 AAAA...`` without the comment: what known_hosts and the
        ``io.distproc.inputs`` hash compare."""
        return " ".join(self.public.split()[:2])


def new_keypair(comment: str) -> KeyPair:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return KeyPair(private, f"{public.decode()} {comment}")


def read_keypair(path: Path) -> KeyPair | None:
    """The pair at ``path`` and ``path.pub``; None if either is missing. The public key is
    derived from the private one again: a stale or edited ``.pub`` is not trusted."""
    pub = path.with_name(path.name + ".pub")
    try:
        private = path.read_bytes()
        comment = " ".join(pub.read_text().split()[2:])
    except FileNotFoundError:
        return None
    try:
        key = serialization.load_ssh_private_key(private, password=None)
    except (ValueError, TypeError) as exc:
        raise TestbedError(f"{path}: not an unencrypted OpenSSH private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise TestbedError(f"{path}: not an ed25519 key")
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return KeyPair(private, f"{public.decode()} {comment}".rstrip())


def known_hosts_text(entries: Iterable[tuple[Machine, KeyPair]]) -> str:
    """One line per machine, ``<address>,<name> ssh-ed25519 AAAA...``: looked up by address
    (hosts.yaml's) or by name (the ssh config's ``Host`` alias)."""
    lines = [f"{m.address},{m.name} {key.public_key}" for m, key in entries]
    return "".join(line + "\n" for line in lines)


def ssh_config_text(machines: Iterable[Machine], key: Path, known_hosts: Path) -> str:
    """An OpenSSH client config naming the key and known_hosts, for ``ssh -F FILE tb-1``
    (or ``ssh -F FILE root@198.18.64.11``), and the ``ssh`` wrapper the Docker SDK runs.
    Absolute paths: it works from any directory."""
    out = [
        "# written by `orchestrate testbed up`: ssh -F <this file> tb-1 (or its address)",
        "# Host keys are checked against the test bed's known_hosts only, never learnt.",
    ]
    for m in machines:
        out += [
            "",
            f"Host {m.name} {m.address}",
            f"    HostName {m.address}",
            f"    User {SSH_USER}",
            f"    IdentityFile {_quote(key)}",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {_quote(known_hosts)}",
            "    GlobalKnownHostsFile /dev/null",
            "    StrictHostKeyChecking yes",
            "    PasswordAuthentication no",
            "    BatchMode yes",
            "    ConnectTimeout 10",
            "    LogLevel ERROR",
        ]
    return "\n".join(out) + "\n"


def ssh_wrapper_text(ssh: str, config: Path) -> str:
    """``bin/ssh``: the real ``ssh`` (an absolute path: the wrapper is itself first in PATH)
    with ``-F <config>``. The Docker SDK (``use_ssh_client=True``) and the docker CLI run
    ``ssh`` from PATH with no way to name a config file; with the wrapper's directory first
    in PATH they use the test bed's key and known_hosts, and ~/.ssh stays untouched."""
    return f'#!/bin/sh\nexec {shlex.quote(ssh)} -F {shlex.quote(str(config))} "$@"\n'


def real_ssh(skip: Path) -> str | None:
    """The OpenSSH client on PATH, not the wrapper in ``skip``; None if there is none."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        if not directory or Path(directory).resolve() == skip.resolve():
            continue
        found = shutil.which("ssh", path=directory)
        if found:
            return found
    return None


def _quote(path: Path) -> str:
    text = str(path)
    return f'"{text}"' if any(c.isspace() for c in text) else text
