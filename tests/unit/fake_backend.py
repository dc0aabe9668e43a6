"""``FakeBackend``: an engine and a master in memory, for testing ``ClusterRun`` (up, wait, job,
check, down) and what sits on it with no engine.

docker-py's idea, one layer up: not mocks that echo what a test scripted, but a small model
of what the real thing does. Its engine allocates addresses from the cluster's subnets, gives
every container a sandbox of its own, places containers on its nodes in turn and labels
everything with ``orchestrate.labels``. Its master parses every command with the queue
program's own parser (a command the real master would refuse fails here too), sees a worker
connect when it shares a network with the master, and runs a job through the real
``Ledger`` and ``report.build``: leases round-robin to the connected workers, each result seen
from the worker's address. So the report it returns is a real one, and the checks judge it
as they would a real cluster's.

What it cannot do, a test sets: ``kill(name)`` stops a container (its worker stops
answering: its leased tasks expire and are re-run, as on a real cluster); ``refuse`` makes
``create`` raise the engine's refusal for one object, after creating what came before it;
``round_delay`` makes a job last (seconds per round of leases), so that a chaos scenario can
strike while it runs. ``faults()`` is a ``FakeFaults``: it logs what a scenario did, changes
the containers' states as the engine would, and reports the kernel features a test gives.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distproc import kinds
from distproc.cli import build_parser
from distproc.ledger import Ledger
from distproc.report import Report, build
from distproc.spec import make_spec

from orchestrate import labels
from orchestrate.backends.base import (
    Backend,
    ContainerInfo,
    EngineError,
    EngineLimits,
    ExecResult,
    Images,
    Inventory,
    NetworkInfo,
    NodeInfo,
)
from orchestrate.backends.faults import IPTABLES, NETEM, OPERATIONS, TBF, Faults
from orchestrate.events import Events
from orchestrate.model import Cluster

GIB = 1024**3
KEY_PATH = "/run/secrets/distproc-authkey"  # where the fake says it delivered the key
PYTHON = "3.11.7"  # the Python its workers report


@dataclass
class FakeObject:
    """A network or a container on the fake engine."""

    name: str
    kind: str  # "network" or "container"
    labels: dict[str, str]
    subnet: str = ""
    networks: list[str] = field(default_factory=list)  # a container's logical networks
    addresses: dict[str, str] = field(default_factory=dict)
    sandbox: str = ""
    state: str = "running"
    node: str = ""
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)


@dataclass
class _Rec:
    """What ``report.build`` reads of a registered worker."""

    wid: str
    identity: dict[str, Any]


class FakeBackend(Backend):
    """A cluster on an engine in memory (see the module docstring)."""

    kind = "fake"

    def __init__(
        self,
        nodes: tuple[str, ...] = ("fake-1",),
        cpus: int = 2,
        memory: int = 8 * GIB,
        refuse: tuple[str, str] | None = None,
        place: Callable[[str], str] | None = None,
        round_delay: float = 0.0,
    ) -> None:
        self.round_delay = round_delay
        self.fake_faults: FakeFaults | None = None  # made by faults(), for tests to read
        self.nodes = nodes
        self.place = place  # container name -> node; by default the nodes in turn
        self.limits = EngineLimits(cpus=cpus, memory=memory)
        self.refuse = refuse  # (object name, the engine's words) that create() refuses
        self.objects: dict[str, FakeObject] = {}
        self.controls: list[list[str]] = []  # every argv control() ran, for tests to read
        self.reports: list[dict[str, Any]] = []
        self.authkey_seen: Path | None = None
        self._sandboxes = itertools.count(4026532000)
        self._node_turn = itertools.cycle(nodes)

    # -- the engine ------------------------------------------------------------------------
    def build_images(self, cluster: Cluster, events: Events) -> Images:
        events.step("preparing images (fake)")
        return Images("fake/distproc:1", "fake/distproc:1")

    def engine_limits(self) -> EngineLimits:
        return self.limits

    def sweep(
        self, cluster_name: str, events: Events, run: str | None = None, keep_data: bool = False
    ) -> int:
        doomed = [
            o.name
            for o in self.objects.values()
            if o.labels.get(labels.CLUSTER) == cluster_name
            and (run is None or o.labels.get(labels.RUN) == run)
        ]
        for name in doomed:
            del self.objects[name]
        return len(doomed)

    def create(
        self, cluster: Cluster, run: str, images: Images, authkey: Path, events: Events
    ) -> None:
        self.authkey_seen = authkey
        for net in cluster.networks:
            self._add(
                FakeObject(
                    f"{cluster.name}-{net.name}",
                    "network",
                    labels.for_cluster(cluster.name, run, labels.ROLE_NETWORK, network=net.name),
                    subnet=net.subnet,
                )
            )
        self._container(
            cluster,
            cluster.master_name,
            cluster.master.networks,
            labels.for_cluster(
                cluster.name, run, labels.ROLE_MASTER, port=str(cluster.master.port)
            ),
            ["master", "--port", str(cluster.master.port)],
        )
        for slot in cluster.iter_workers():
            self._container(
                cluster,
                slot.name,
                slot.group.networks,
                labels.for_cluster(
                    cluster.name,
                    run,
                    labels.ROLE_WORKER,
                    group=slot.group.name,
                    index=str(slot.index),
                ),
                ["worker", "--name", slot.name, "--group", slot.group.name],
            )

    def _add(self, obj: FakeObject) -> None:
        if self.refuse is not None and obj.name == self.refuse[0]:
            raise EngineError(f"could not create {obj.kind} {obj.name}: {self.refuse[1]}")
        if obj.name in self.objects:
            raise EngineError(f"could not create {obj.kind} {obj.name}: the name is in use")
        self.objects[obj.name] = obj

    def _container(
        self,
        cluster: Cluster,
        name: str,
        networks: list[str],
        object_labels: dict[str, str],
        command: list[str],
    ) -> None:
        addresses = {}
        for net in networks:
            subnet = ipaddress.ip_network(cluster.network(net).subnet)
            taken = {
                o.addresses.get(net)
                for o in self.objects.values()
                if o.labels.get(labels.CLUSTER) == cluster.name
            }
            # the gateway is .1: the first free address after it, as Docker's IPAM does
            free = next(str(ip) for ip in list(subnet.hosts())[1:] if str(ip) not in taken)
            addresses[net] = free
        self._add(
            FakeObject(
                name,
                "container",
                object_labels,
                networks=list(networks),
                addresses=addresses,
                sandbox=f"net:[{next(self._sandboxes)}]",
                node=self.place(name) if self.place else next(self._node_turn),
                command=command,
                env={"DISTPROC_AUTHKEY_FILE": KEY_PATH},
            )
        )

    def kill(self, name: str) -> None:
        """SIGKILL a container: it stays, exited, and its worker stops answering."""
        self.objects[name].state = "exited"

    def _of(self, cluster_name: str, role: str | None = None) -> list[FakeObject]:
        return [
            o
            for o in self.objects.values()
            if o.labels.get(labels.CLUSTER) == cluster_name
            and (role is None or o.labels.get(labels.ROLE) == role)
        ]

    def inventory(self, cluster_name: str) -> Inventory:
        inv = Inventory(
            cluster_name,
            backend=self.kind,
            nodes=[NodeInfo(n, "", "fake", "ready") for n in self.nodes],
        )
        for o in self._of(cluster_name, labels.ROLE_NETWORK):
            logical = o.labels[labels.NETWORK]
            inv.networks.append(NetworkInfo(logical, o.name, o.subnet, id=o.name))
        inv.networks.sort(key=lambda n: n.name)
        for o in self._of(cluster_name):
            role = o.labels.get(labels.ROLE, "")
            if o.kind != "container":
                continue
            info = ContainerInfo(
                o.name,
                o.name,
                role,
                o.state,
                dict(o.addresses) if o.state == "running" else {},
                o.sandbox,
                o.labels.get(labels.GROUP, ""),
                node=o.node,
                identity=o.name if role == labels.ROLE_WORKER else "",
            )
            if role == labels.ROLE_MASTER:
                inv.master, inv.run = info, o.labels[labels.RUN]
                inv.port = int(o.labels[labels.PORT])
                inv.images = {"master": "fake/distproc:1", "worker": "fake/distproc:1"}
            elif role == labels.ROLE_WORKER:
                inv.workers.append(info)
        return inv

    def logs(self, cluster_name: str, name: str | None, follow: bool) -> Iterator[str]:
        for o in self._of(cluster_name):
            if o.kind == "container" and name in (None, o.name):
                yield from (line + "\n" for line in o.log)

    def save_logs(self, cluster_name: str, directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for o in self._of(cluster_name):
            if o.kind == "container":
                path = directory / f"{o.name}.log"
                path.write_text("".join(line + "\n" for line in o.log))
                paths.append(path)
        return paths

    def probe(self, cluster: Cluster, images: Images, targets: list[str], run: str) -> ExecResult:
        """The probe's network shares nothing with the master's: every target unreachable."""
        out = "\n".join(f"unreachable {t}: timed out" for t in targets)
        return ExecResult(1, out, "probe network 198.19.255.240/28 (fake)")

    def memory_usage(self, cluster_name: str) -> dict[str, int]:
        return {o.name: 12 * 2**20 for o in self._of(cluster_name) if o.state == "running"}

    # -- the master ------------------------------------------------------------------------
    def control(
        self,
        cluster_name: str,
        argv: list[str],
        on_stderr_line: Callable[[str], None] | None = None,
    ) -> ExecResult:
        masters = [o for o in self._of(cluster_name, labels.ROLE_MASTER) if o.state == "running"]
        if not masters:
            raise EngineError(f"cluster {cluster_name!r} has no running master: run `up` first")
        port = masters[0].labels[labels.PORT]
        full = [argv[0], "--master", f"127.0.0.1:{port}", *argv[1:]]
        self.controls.append(full)
        args = build_parser().parse_args(full)  # the queue program's own parser
        if args.command == "status":
            return ExecResult(0, json.dumps(self._status(cluster_name, masters[0])), "")
        if args.command == "submit":
            report = self._run_job(cluster_name, masters[0], args, on_stderr_line)
            self.reports.append(report.to_dict())
            return ExecResult(0 if report.ok else 3, json.dumps(report.to_dict()), "")
        if args.command == "report":
            if not self.reports:
                return ExecResult(1, "", "no job has run on this master")
            return ExecResult(0, json.dumps(self.reports[-1]), "")
        if args.command == "cancel":
            return ExecResult(0, json.dumps(self.reports[-1]) if self.reports else "", "")
        return ExecResult(2, "", f"the fake master does not run {args.command!r}")

    def _status(self, cluster_name: str, master: FakeObject) -> dict[str, Any]:
        """``status`` as the real master shapes it: the connected workers, what each did in
        the last job (``tasks``; ``leased`` is 0: a fake job is over when ``submit`` returns)
        and that job's progress."""
        last = self.reports[-1] if self.reports else None
        by_worker = {w["id"]: w["tasks"] for w in last["workers"]} if last else {}
        workers = [
            {
                "id": w.name,
                "identity": {"name": w.name, "group": w.labels.get(labels.GROUP, ""),
                             "python": PYTHON},
                "peers": sorted(w.addresses.values()),
                "connected": True,
                "left": False,
                "tasks": by_worker.get(w.name, 0),
                "leased": 0,
            }
            for w in self._connected(cluster_name, master)
        ]  # fmt: skip
        job = None
        if last is not None:
            t = last["totals"]
            spec = {k: v for k, v in last["job"].items() if k != "id"}
            counts = {k: t[k] for k in ("ok", "failed", "dead", "lost", "duplicates")}
            done = t["ok"] + t["failed"] + t["dead"] + t["lost"]
            job = {"job": last["job"]["id"], "total": t["tasks"], "done": done, **counts,
                   "finished": True, "spec": spec}  # fmt: skip
        return {"master": {"netns": master.sandbox}, "workers": workers, "job": job}

    def _connected(self, cluster_name: str, master: FakeObject) -> list[FakeObject]:
        """Running workers that share a network with the master (they connect at once)."""
        return [
            w
            for w in self._of(cluster_name, labels.ROLE_WORKER)
            if w.state == "running" and set(w.networks) & set(master.networks)
        ]

    def _run_job(
        self,
        cluster_name: str,
        master: FakeObject,
        args: Any,
        on_line: Callable[[str], None] | None,
    ) -> Report:
        spec = make_spec({name: getattr(args, name) for name in _spec_fields()})
        payloads = kinds.make_payloads(spec.kind, spec.tasks, spec.size, spec.seed)
        job = Ledger(f"fake-{len(self.reports) + 1}", spec, payloads)
        seen: dict[str, tuple[int, FakeObject, str]] = {}  # worker -> (index, it, network)
        rounds = 0
        while not job.done and rounds < 10 * spec.tasks + 10:
            rounds += 1
            time.sleep(self.round_delay)
            # who answers now: one killed, frozen or removed since stops; one added starts
            workers = self._connected(cluster_name, master)
            if not workers:
                break
            for w in workers:
                net = sorted(set(w.networks) & set(master.networks))[0]
                index, _, _ = seen.setdefault(w.name, (len(seen), w, net))
                lease = job.lease(index, spec.batch, len(workers))
                if lease is None:
                    continue
                # as a worker answers a range lease: flat values in id order, per lease
                ranges = [(a, b - a) for a, b in lease.spans]
                values = [kinds.expected(spec.kind, payloads[t]) for a, b in lease.spans
                          for t in range(a, b)]  # fmt: skip
                job.settle(index, w.addresses[net], [(lease.id, ranges, values, [])])
            if on_line is not None:
                done = job.progress()
                on_line(json.dumps({"progress": {"done": done["done"], "total": spec.tasks}}))
        if not job.done:
            job.stop("no worker connected")
        identities = [
            _Rec(w.name, {"name": w.name, "local_ip": w.addresses[net], "netns": w.sandbox})
            for _, w, net in sorted(seen.values(), key=lambda x: x[0])
        ]
        return build(job, identities, {"netns": master.sandbox})

    def faults(self, cluster_name: str, run: str) -> Faults:
        if self.fake_faults is None:
            self.fake_faults = FakeFaults(self)
        return self.fake_faults


NO_NETEM = "Error: Specified qdisc kind is unknown."


class FakeFaults(Faults):
    """Faults on the fake engine: each one logged in ``log`` as ``(operation, container,
    detail)``; a killed or frozen worker stops answering (``FakeBackend._run_job`` skips it).
    ``kernel`` is what ``kernel_features`` reports (default: this machine's, no netem);
    ``operations`` narrows what it offers; ``fail`` names an operation that fails."""

    backend = "fake"
    operations: frozenset[str] = frozenset(OPERATIONS)  # type: ignore[misc]
    missing = {op: f"the fake does not {op}" for op in OPERATIONS}

    def __init__(self, fake: FakeBackend) -> None:
        self.fake = fake
        self.log: list[tuple[str, ...]] = []
        self.kernel = {TBF: "", NETEM: NO_NETEM, IPTABLES: ""}
        self.fail = ""

    def _do(self, op: str, c: ContainerInfo, detail: str = "", state: str = "") -> None:
        self.log.append((op, c.name, detail))
        if op == self.fail:
            raise EngineError(f"the fake engine refused to {op} {c.name}")
        if state:
            self.fake.objects[c.name].state = state

    def kill(self, c: ContainerInfo) -> None:
        self._do("kill", c, state="exited")

    def restart(self, c: ContainerInfo) -> None:
        self._do("restart", c, state="running")

    def freeze(self, c: ContainerInfo) -> None:
        self._do("freeze", c, state="paused")

    def thaw(self, c: ContainerInfo) -> None:
        self._do("thaw", c, state="running")

    def disconnect(self, c: ContainerInfo, network: NetworkInfo) -> None:
        self._do("disconnect", c, network.name)

    def reconnect(self, c: ContainerInfo, network: NetworkInfo, address: str) -> None:
        self._do("reconnect", c, f"{network.name} {address}")

    def in_netns(self, c: ContainerInfo, argv: list[str], events: Events) -> ExecResult:
        self._do("netns", c, " ".join(argv[3:]))
        return ExecResult(0, "eth0\n", "")

    def kernel_features(self, events: Events) -> dict[str, str]:
        self.log.append(("probe", "", ""))
        return dict(self.kernel)

    def add_worker(self, cluster: Cluster, group: str) -> ContainerInfo:
        g = cluster.group(group)
        name = cluster.container_name(group, g.count)
        self.log.append(("add-worker", name, group))
        self.fake._container(
            cluster, name, g.networks,
            labels.for_cluster(cluster.name, "chaos", labels.ROLE_WORKER, group=group,
                               index=str(g.count)),
            ["worker", "--name", name],
        )  # fmt: skip
        return next(w for w in self.fake.inventory(cluster.name).workers if w.name == name)

    def remove_worker(self, c: ContainerInfo, grace: float) -> None:
        self._do("remove-worker", c)
        del self.fake.objects[c.name]


def _spec_fields() -> list[str]:
    from distproc.spec import job_fields

    return [f.name for f in job_fields()]
