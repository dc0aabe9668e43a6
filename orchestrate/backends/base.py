"""The one interface every backend implements (local Docker, Docker Swarm), and what it returns.

Like Kathara's ``IManager``: everything above this line is engine-neutral, and a backend
realises a ``Cluster`` (the model) on its engine. Nothing here names an engine's own
concepts: a container is where a process runs, a node is the machine it runs on, the
authkey is a secret the backend delivers, and the master is reached through ``control``,
wherever the backend runs that. ``make_backend`` (in ``orchestrate.backends``) is the one
place that picks an implementation.
"""

from __future__ import annotations

import ipaddress
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..events import Events
from ..model import Cluster, OrchestrateError

if TYPE_CHECKING:
    from .faults import Faults


class EngineError(OrchestrateError):
    """The engine is missing or refused something; ``raw`` is the engine's own text (shown
    with ``--verbose``), empty when the message is already all there is. Every ``Backend``
    method raises this, and only this, for a failure of the engine or of reaching it."""

    def __init__(self, message: str, raw: str = "") -> None:
        super().__init__(message)
        self.raw = raw


@dataclass
class ContainerInfo:
    """A container as the engine sees it."""

    name: str
    id: str
    role: str  # master, worker, probe, or "" for a container we did not create
    state: str
    addresses: dict[str, str] = field(default_factory=dict)  # cluster network -> IPv4
    #: the engine's network-namespace id: unique on one machine only, so it is compared
    #: together with ``node`` (namespace ids are per kernel)
    sandbox: str = ""
    group: str = ""
    managed: bool = True
    node: str = ""  # the machine it runs on, as the backend names it (``NodeInfo.name``)
    #: the name its worker reports (``hello``'s identity) when the backend gave it one
    identity: str = ""

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "container": self.name,
            "addresses": self.addresses,
            "state": self.state,
            "node": self.node,
        }
        if self.role == "worker":
            out["group"] = self.group
        return out


@dataclass
class NodeInfo:
    """A machine the cluster runs on: the local engine's, or a swarm node."""

    name: str
    address: str = ""
    role: str = ""  # "local", or a swarm node's "manager" / "worker"
    state: str = ""  # "ready", "down", ...

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "address": self.address, "role": self.role, "state": self.state}


@dataclass
class NetworkInfo:
    """A cluster network: its name in cluster.yaml and on the engine."""

    name: str
    engine_name: str  # its name on the engine (prefixed with the cluster's)
    subnet: str
    id: str = ""
    internal: bool = True


@dataclass
class Inventory:
    """Everything of one cluster that is on the engine now."""

    cluster: str
    run: str = ""
    backend: str = "local"  # ``Backend.kind`` of what made it
    nodes: list[NodeInfo] = field(default_factory=list)
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
        a worker that left during a job is still who its results came from. A container is
        the same one by its id (a swarm task rescheduled under the same name is another)."""
        now = {c.id or c.name: c for c in [*self.workers, *self.others]}
        for c in [*earlier.workers, *earlier.others]:
            current = now.get(c.id or c.name)
            if current is None:
                gone = replace(c, state="gone", addresses=dict(c.addresses))
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
            "backend": self.backend,
            "nodes": [n.as_json() for n in self.nodes],
            "networks": [
                {"name": n.name, "engine_name": n.engine_name, "subnet": n.subnet}
                for n in self.networks
            ],
            "master": None
            if self.master is None
            else {
                "container": self.master.name,
                "addresses": self.master.addresses,
                "port": self.port,
                "state": self.master.state,
                "node": self.master.node,
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
    """Realises a cluster on an engine. Every object it creates carries the cluster's labels
    (``orchestrate.labels``), and is found and removed by them. Every method raises
    ``EngineError`` (one plain line) when the engine fails or cannot be reached, and nothing
    else for that; a method that cannot work on a cluster in the state it finds says so with
    ``EngineError`` too."""

    #: what ``backend:`` in cluster.yaml names this implementation ("local", "swarm")
    kind: ClassVar[str]

    @abstractmethod
    def build_images(self, cluster: Cluster, events: Events) -> Images:
        """Build (or find cached) images for the cluster, and make them available wherever
        its containers will run (for Swarm: on every node that lacks them)."""

    @abstractmethod
    def engine_limits(self) -> EngineLimits:
        """What one container may ask of the engine, asked before anything is created, so
        that a limit the engine would refuse is a config error naming the field, not an
        engine error halfway through ``create``."""

    @abstractmethod
    def sweep(
        self, cluster_name: str, events: Events, run: str | None = None, keep_data: bool = False
    ) -> int:
        """Remove every object labelled with the cluster (idempotent); returns how many.
        With ``run``, only the objects that run created: a failed ``up`` rolls itself back.
        ``keep_data`` keeps the master's journal volume (``down --keep-data``, and ``up``'s
        sweep of leftovers: a journal kept on purpose is replayed by the next master)."""

    @abstractmethod
    def create(
        self, cluster: Cluster, run: str, images: Images, authkey: Path, events: Events
    ) -> None:
        """Create the networks, then start the master and the workers. ``authkey`` is the
        key file on this host: the backend delivers it to the containers as a secret (a
        read-only bind mount, a Swarm secret), at the path it names in
        ``DISTPROC_AUTHKEY_FILE``; the key itself never goes into an image, an env var or
        a command line. What was created before a refusal stays, labelled with ``run``,
        for the caller to sweep."""

    @abstractmethod
    def inventory(self, cluster_name: str) -> Inventory:
        """What of the cluster exists now, with addresses and nodes from the engine."""

    def worker_names(self, cluster: Cluster) -> list[str]:
        """The names the cluster's workers report (their ``--name``), in the model's order:
        what readiness waits for and what the checks expect. By default the model's
        container names."""
        return cluster.worker_names()

    @abstractmethod
    def control(
        self,
        cluster_name: str,
        argv: list[str],
        on_stderr_line: Callable[[str], None] | None = None,
    ) -> ExecResult:
        """Run ``python -m distproc ARGV`` where it reaches the master: ``ARGV`` is one of
        the commands that talk to the master (``status``, ``submit``, ``report``,
        ``cancel``) and the backend adds ``--master ADDRESS`` as seen from where it runs
        it (inside the master's container; on the node the master's task runs on). Its
        stderr lines go to ``on_stderr_line`` as they come."""

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

    @abstractmethod
    def memory_usage(self, cluster_name: str) -> dict[str, int]:
        """Bytes of memory each running container of the cluster uses now, by name (for
        the bench)."""

    def faults(self, cluster_name: str, run: str) -> Faults:
        """What chaos scenarios may do to the cluster's containers here (``faults.Faults``);
        what it makes is labelled with the cluster and the chaos run ``run``."""
        raise EngineError(f"the {self.kind} backend injects no faults")


#: Where the master keeps its journal, on a volume of its own (``journal_volume``): the
#: image makes the directory writable by any uid (the containers run as the caller's).
JOURNAL_DIR = "/var/lib/distproc"
JOURNAL_PATH = f"{JOURNAL_DIR}/journal.sqlite"


def journal_volume(cluster_name: str) -> str:
    """The name of the master's journal volume (labelled with the cluster, like the rest)."""
    return f"{cluster_name}-journal"


def master_command(cluster: Cluster) -> list[str]:
    """The master's command line, on every backend: its port, and its journal unless the
    file turns it off (``master.journal: false``)."""
    argv = ["master", "--host", "0.0.0.0", "--port", str(cluster.master.port)]
    if cluster.master.journal:
        argv += ["--journal", JOURNAL_PATH]
    return argv


def with_master(argv: list[str], address: str) -> list[str]:
    """``argv`` (a distproc command) with ``--master ADDRESS`` after the command name."""
    return [argv[0], "--master", address, *argv[1:]]
