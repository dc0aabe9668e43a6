"""The one interface a backend implements (local Docker now; Swarm next), and what it returns.

Like Kathara's ``IManager``: everything above this line is engine-neutral, and a backend
realises a ``Cluster`` (the model) on its engine.
"""

from __future__ import annotations

import ipaddress
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..events import Events
from ..model import Cluster


@dataclass
class ContainerInfo:
    """A container as the engine sees it."""

    name: str
    id: str
    role: str  # master, worker, probe, or "" for a container we did not create
    state: str
    addresses: dict[str, str] = field(default_factory=dict)  # cluster network -> IPv4
    sandbox: str = ""  # the engine's network-namespace id
    group: str = ""
    managed: bool = True

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "container": self.name,
            "addresses": self.addresses,
            "state": self.state,
        }
        if self.role == "worker":
            out["group"] = self.group
        return out


@dataclass
class NetworkInfo:
    """A cluster network: its name in cluster.yaml and on the engine."""

    name: str
    docker_name: str
    subnet: str
    id: str = ""
    internal: bool = True


@dataclass
class Inventory:
    """Everything of one cluster that is on the engine now."""

    cluster: str
    run: str = ""
    networks: list[NetworkInfo] = field(default_factory=list)
    master: ContainerInfo | None = None
    workers: list[ContainerInfo] = field(default_factory=list)
    others: list[ContainerInfo] = field(default_factory=list)  # joined by hand
    images: dict[str, str] = field(default_factory=dict)
    port: int = 0
    authkey_file: str = ""

    @property
    def empty(self) -> bool:
        return not (self.networks or self.master or self.workers)

    def remember(self, earlier: Inventory) -> Inventory:
        """Keep the addresses ``earlier`` saw for containers that have stopped or gone since:
        a worker that left during a job is still who its results came from."""
        now = {c.name: c for c in [*self.workers, *self.others]}
        for c in [*earlier.workers, *earlier.others]:
            current = now.get(c.name)
            if current is None:
                gone = ContainerInfo(
                    c.name, c.id, c.role, "gone", dict(c.addresses), c.sandbox, c.group, c.managed
                )
                (self.workers if c.managed else self.others).append(gone)
            elif not current.addresses:  # stopped: the engine forgot its addresses
                current.addresses = dict(c.addresses)
                current.sandbox = current.sandbox or c.sandbox
        return self

    def owner_of(self, ip: str) -> ContainerInfo | None:
        """The container that holds ``ip`` on one of the cluster's networks."""
        for c in [*([self.master] if self.master else []), *self.workers, *self.others]:
            if ip in c.addresses.values():
                return c
        return None

    def network_of(self, ip: str) -> str:
        """The cluster network whose subnet contains ``ip`` ('' if none)."""
        addr = ipaddress.ip_address(ip)
        for net in self.networks:
            if addr in ipaddress.ip_network(net.subnet):
                return net.name
        return ""

    def as_status(self) -> dict[str, Any]:
        """The ``status --json`` document. ``images`` always has ``master`` and ``worker``
        ("" when unknown): a user joining a worker by hand reads ``images.worker``, and
        does so exactly when no worker container exists yet."""
        return {
            "cluster": self.cluster,
            "run": self.run,
            "networks": [
                {"name": n.name, "docker_name": n.docker_name, "subnet": n.subnet}
                for n in self.networks
            ],
            "master": None
            if self.master is None
            else {
                "container": self.master.name,
                "addresses": self.master.addresses,
                "port": self.port,
                "state": self.master.state,
            },
            "workers": [w.as_json() for w in self.workers],
            "images": {"master": "", "worker": "", **self.images},
            "authkey_file": self.authkey_file,
        }


@dataclass
class ExecResult:
    """What a command run in a container printed, and its exit code."""

    exit_code: int
    stdout: str
    stderr: str


@dataclass
class Images:
    """The image references the containers run."""

    master: str
    worker: str


@dataclass(frozen=True)
class EngineLimits:
    """What the engine can give one container: the ceiling for ``resources``."""

    cpus: int  # CPUs the engine sees (a container's ``cpus`` may be at most this)
    memory: int  # bytes of memory on the engine's host
    pids_limit: bool = True  # whether the engine enforces ``pids`` (cgroup pids controller)


class Backend(ABC):
    """Realises a cluster on an engine. Every object it creates carries the cluster's labels."""

    @abstractmethod
    def build_images(self, cluster: Cluster, events: Events) -> Images:
        """Build (or find cached) images for the cluster."""

    @abstractmethod
    def engine_limits(self) -> EngineLimits:
        """What one container may ask of the engine, asked before anything is created, so
        that a limit the engine would refuse is a config error naming the field, not an
        engine error halfway through ``create``. Raises ``EngineError`` (a plain line) when
        the engine cannot be asked."""

    @abstractmethod
    def sweep(self, cluster_name: str, events: Events, run: str | None = None) -> int:
        """Remove every object labelled with the cluster (idempotent); returns how many.
        With ``run``, only the objects that run created: a failed ``up`` rolls itself back."""

    @abstractmethod
    def create(
        self, cluster: Cluster, run: str, images: Images, keyfile: Path, events: Events
    ) -> None:
        """Create the networks, then start the master and the workers. An engine refusal
        raises ``EngineError`` (one plain line); what was created stays, labelled with
        ``run``, for the caller to sweep."""

    @abstractmethod
    def inventory(self, cluster_name: str) -> Inventory:
        """What of the cluster exists now, with addresses from the engine."""

    @abstractmethod
    def exec_master(
        self,
        cluster_name: str,
        argv: list[str],
        on_stderr_line: Callable[[str], None] | None = None,
    ) -> ExecResult:
        """Run ``python -m distproc ARGV`` inside the master container."""

    @abstractmethod
    def logs(self, cluster_name: str, name: str | None, follow: bool) -> Iterator[str]:
        """Log lines of one container (by name or short name), or of all of them."""

    @abstractmethod
    def save_logs(self, cluster_name: str, directory: Path) -> list[Path]:
        """Write every container's log to ``directory`` (for CI artifacts); returns the files."""

    @abstractmethod
    def probe(self, cluster: Cluster, images: Images, targets: list[str], run: str) -> ExecResult:
        """From a throwaway container on a network the master is not on, try ``targets``
        (``ip:port``); exit code 0 means one of them was reachable."""
