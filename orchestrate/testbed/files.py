"""The test bed's state directory: ``.cluster/testbed/`` (``DISTPROC_STATE_DIR`` moves it,
as for a cluster's state).

What ``up`` writes there, and ``down`` removes again (nothing else)::

    hosts.yaml              the machines, for cluster.yaml's `hosts: {file: ...}`
    id_ed25519, .pub        the client key pair every machine accepts for root
    known_hosts             each machine's host key, by address and by name
    host_keys/tb-N, .pub    each machine's host key pair (delivered to it; kept here so that a
                            recreated machine keeps the key known_hosts names)
    ssh_config              `ssh -F ssh_config tb-1`
    bin/ssh                 `ssh -F ssh_config`, for the Docker SDK and the docker CLI

Files are written only when their content changes, so a second ``up`` reports nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..model.hosts import TESTBED_DIR, TESTBED_HOSTS_FILE
from ..state import state_dir
from . import hostsfile
from .keys import KeyPair, new_keypair, read_keypair
from .plan import Machine

#: The directory's name under the state directory: the model's ``.cluster/testbed``, which
#: examples/swarm.yaml includes (moved with DISTPROC_STATE_DIR, as a cluster's state).
DIR_NAME = TESTBED_DIR.name


@dataclass(frozen=True)
class BedFiles:
    """The paths of the state directory; ``root`` is absolute."""

    root: Path

    @classmethod
    def default(cls) -> BedFiles:
        return cls(state_dir(DIR_NAME))

    @property
    def hosts(self) -> Path:
        return self.root / TESTBED_HOSTS_FILE.name

    @property
    def key(self) -> Path:
        return self.root / hostsfile.KEY_FILE

    @property
    def known_hosts(self) -> Path:
        return self.root / hostsfile.KNOWN_HOSTS

    @property
    def ssh_config(self) -> Path:
        return self.root / "ssh_config"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def host_keys(self) -> Path:
        return self.root / "host_keys"

    def host_key(self, name: str) -> Path:
        return self.host_keys / name

    def ensure_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)

    def keypair(self, path: Path, comment: str) -> tuple[KeyPair, bool]:
        """The pair kept at ``path``, or a new one written there; (pair, created)."""
        pair = read_keypair(path)
        if pair is not None:
            return pair, False
        pair = new_keypair(comment)
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path, pair.private, 0o600)
        write(path.with_name(path.name + ".pub"), (pair.public + "\n").encode(), 0o644)
        return pair, True

    def forget(self, name: str) -> None:
        """Remove machine ``name``'s host key pair (the machine is gone)."""
        key = self.host_key(name)
        for path in (key, key.with_name(key.name + ".pub")):
            path.unlink(missing_ok=True)

    def written(self, machines: Iterable[Machine]) -> list[Path]:
        """Every file ``up`` may have written for ``machines`` (or for any machine, with
        the host key directory listed)."""
        names = [m.name for m in machines]
        if self.host_keys.is_dir():
            names += [p.name for p in self.host_keys.iterdir() if not p.name.endswith(".pub")]
        paths = [self.hosts, self.known_hosts, self.ssh_config, self.bin / "ssh"]
        paths += [self.key, self.key.with_name(self.key.name + ".pub")]
        for name in dict.fromkeys(names):
            key = self.host_key(name)
            paths += [key, key.with_name(key.name + ".pub")]
        return paths

    def remove(self, machines: Iterable[Machine] = ()) -> list[Path]:
        """Remove what ``up`` wrote, then its directories if they are left empty; the
        paths removed. A file nobody wrote here (a user's note) keeps the directory."""
        removed = []
        for path in self.written(machines):
            try:
                path.unlink()
                removed.append(path)
            except FileNotFoundError:
                pass
        for directory in (self.host_keys, self.bin, self.root):
            with contextlib.suppress(OSError):  # missing, or holds something not ours
                directory.rmdir()
        return removed


def write(path: Path, content: bytes, mode: int = 0o644) -> bool:
    """Write ``content`` to ``path`` (created with ``mode``) unless it is there already;
    True if the file changed. The mode is set before any byte is written."""
    try:
        if path.read_bytes() == content:
            if path.stat().st_mode & 0o777 != mode:
                path.chmod(mode)
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    os.chmod(tmp, mode)  # the umask may have narrowed it
    os.replace(tmp, path)
    return True
