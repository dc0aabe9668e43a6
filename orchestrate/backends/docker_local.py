"""The local Docker backend: networks, hardened containers, exec, logs and probes.

Containers are made with ``create()`` + ``start()`` (``containers.run`` pulls a missing image,
which turns a typo into a registry time-out). Every object carries the labels of
``orchestrate.labels``, and everything is found and removed by those labels.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
from distproc.text import plural
from docker.types import IPAMConfig, IPAMPool, Mount

from .. import labels
from ..events import Events
from ..model import Cluster, WorkerGroup, WorkerSlot
from ..state import KEY_IN_CONTAINER, container_user
from .base import (
    JOURNAL_DIR,
    Backend,
    ContainerInfo,
    EngineError,
    EngineLimits,
    ExecResult,
    Images,
    Inventory,
    NetworkInfo,
    NodeInfo,
    journal_volume,
    master_command,
    with_master,
)
from .docker_errors import SubnetHolder, engine_call, overlapping
from .docker_images import build_image, resolve_base
from .faults import Faults

PROGRAM = ["python3", "-m", "distproc"]
#: One engine, one machine: a bridge per cluster network (Swarm uses overlays instead).
NETWORK_DRIVER = "bridge"
#: Addresses for throwaway probe networks: inside 198.18.0.0/15, from the top down.
PROBE_RANGE = ipaddress.ip_network("198.19.240.0/20")
START_THREADS = 8
T = TypeVar("T")
#: The master's restart policy: a master that dies on its own (OOM, a crash) is started
#: again, with no limit, on the engine's back-off (0.1 s doubling to 1 min). A limit counts
#: over the container's whole life (Docker resets it only on a start by hand): with 5, the
#: sixth crash in a cluster's life was left down while `orchestrate job` waited for it.
MASTER_RESTART_POLICY = {"Name": "on-failure", "MaximumRetryCount": 0}


def connect_engine() -> docker.DockerClient:
    """A client for the local engine, with a clear error when there is none."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        raise EngineError(
            f"no Docker engine: {exc}. Start it (systemctl start docker, or `dockerd &` as "
            "root) and check that `docker info` works"
        ) from None


def _network_name(cluster: str, net: str) -> str:
    return f"{cluster}-{net}"


def _hardening(resources: Any, keyfile: Path | None) -> dict[str, Any]:
    """What every container gets: non-root, read-only, no capabilities, limits, an init;
    and the key file, read-only, where one is needed."""
    uid, gid = container_user()
    key: dict[str, Any] = {}
    if keyfile is not None:
        key = {
            "mounts": [Mount(KEY_IN_CONTAINER, str(keyfile), type="bind", read_only=True)],
            "environment": {"DISTPROC_AUTHKEY_FILE": KEY_IN_CONTAINER},
        }
    return {
        "user": f"{uid}:{gid}",
        "read_only": True,
        "tmpfs": {"/tmp": "rw,nosuid,nodev,size=64m"},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "init": True,
        "mem_limit": resources.memory,
        "memswap_limit": resources.memory,
        "nano_cpus": resources.nano_cpus,
        "pids_limit": resources.pids,
        **key,
    }


def _worker_args(cluster: Cluster, group: WorkerGroup, name: str) -> list[str]:
    args = [
        "worker",
        "--master",
        f"{cluster.master_name}:{cluster.master.port}",
        "--name",
        name,
        "--group",
        group.name,
        "--connect-timeout",
        "600",
    ]
    if group.mode != "auto":
        args += ["--mode", group.mode]
    if group.concurrency != "auto":
        args += ["--concurrency", str(group.concurrency)]
    return args


class DockerBackend(Backend):
    """A cluster on the local Docker engine, one network namespace per container."""

    kind = "local"

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        self.client = client or connect_engine()
        self._node: NodeInfo | None = None

    # -- images ----------------------------------------------------------------------------
    def build_images(self, cluster: Cluster, events: Events) -> Images:
        with engine_call("build", "the cluster's image"):
            base = resolve_base(self.client, cluster.images.base, events)
            tag = build_image(self.client, base, events)
        return Images(master=tag, worker=tag)

    def engine_limits(self) -> EngineLimits:
        with engine_call("ask", "the engine for its limits (docker info)"):
            info = self.client.info()
        return EngineLimits(
            cpus=int(info.get("NCPU") or 0),
            memory=int(info.get("MemTotal") or 0),
            pids_limit=bool(info.get("PidsLimit", True)),
        )

    # -- teardown --------------------------------------------------------------------------
    def sweep(
        self, cluster_name: str, events: Events, run: str | None = None, keep_data: bool = False
    ) -> int:
        flt = labels.cluster_filter(cluster_name)
        if run is not None:
            flt["label"].append(f"{labels.RUN}={run}")
        removed = 0
        with engine_call("remove", f"the objects of cluster {cluster_name!r}"):
            containers = self.client.containers.list(all=True, filters=flt)
            with ThreadPoolExecutor(START_THREADS) as pool:
                for _ in pool.map(self._remove_container, containers):
                    removed += 1
            for net in self.client.networks.list(filters=flt):
                removed += remove_network(net)
            if not keep_data:  # after the containers: a volume in use cannot go
                for volume in self.client.volumes.list(filters=flt):
                    with contextlib.suppress(docker.errors.NotFound):
                        volume.remove()
                        removed += 1
        return removed

    @staticmethod
    def _remove_container(container: Any) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)

    # -- bring-up --------------------------------------------------------------------------
    def create(
        self, cluster: Cluster, run: str, images: Images, authkey: Path, events: Events
    ) -> None:
        """The key reaches the containers as a read-only bind mount of ``authkey``."""
        events.step(f"creating {plural(len(cluster.networks), 'network')}")
        for net in cluster.networks:
            name = _network_name(cluster.name, net.name)
            with engine_call(
                "create network",
                name,
                subnet=net.subnet,
                holders=lambda subnet=net.subnet: self._subnet_holders(subnet),
            ):
                self.client.networks.create(
                    name,
                    driver=NETWORK_DRIVER,
                    internal=net.internal,
                    check_duplicate=True,
                    ipam=IPAMConfig(
                        pool_configs=[IPAMPool(subnet=net.subnet, gateway=str(net.gateway))]
                    ),
                    labels=labels.for_cluster(
                        cluster.name, run, labels.ROLE_NETWORK, network=net.name
                    ),
                )
            events.info(
                f"network {_network_name(cluster.name, net.name)} {net.subnet}"
                + (" (internal)" if net.internal else "")
            )
        events.step(f"starting the master {cluster.master_name}")
        self._start(
            cluster,
            cluster.master_name,
            images.master,
            master_command(cluster),
            cluster.master.networks,
            cluster.master.resources,
            authkey,
            labels.for_cluster(
                cluster.name,
                run,
                labels.ROLE_MASTER,
                port=str(cluster.master.port),
                authkey_file=str(authkey),
                image=images.master,
                worker_image=images.worker,
            ),
            mounts=self._journal_mounts(cluster, run, events),
            # a master that dies on its own (OOM, a crash) comes back and replays its
            # journal; one stopped or killed through the engine stays down (Docker's rule)
            restart_policy=MASTER_RESTART_POLICY,
        )
        slots = list(cluster.iter_workers())
        events.step(f"starting {plural(len(slots), 'worker')}")
        done = 0

        def start(slot: WorkerSlot) -> None:
            self.start_worker(cluster, slot, run, images.worker, authkey)

        with ThreadPoolExecutor(START_THREADS) as pool:
            for _ in pool.map(start, slots):
                done += 1
                events.progress("start", done, len(slots), "workers started")

    def start_worker(
        self,
        cluster: Cluster,
        slot: WorkerSlot,
        run: str,
        image: str,
        authkey: Path,
        **extra_labels: str,
    ) -> None:
        """Start one worker container (``create``'s; a chaos ``scale`` adds one this way)."""
        self._start(
            cluster,
            slot.name,
            image,
            _worker_args(cluster, slot.group, slot.name),
            slot.group.networks,
            slot.group.resources,
            authkey,
            labels.for_cluster(
                cluster.name,
                run,
                labels.ROLE_WORKER,
                group=slot.group.name,
                index=str(slot.index),
                image=image,
                **extra_labels,
            ),
        )

    def _journal_mounts(self, cluster: Cluster, run: str, events: Events) -> list[Mount]:
        """The master's journal volume, made (labelled) or found kept from an earlier run;
        none when the file turns the journal off."""
        if not cluster.master.journal:
            return []
        name = journal_volume(cluster.name)
        with engine_call("create volume", name):
            try:
                kept = self.client.volumes.get(name)
            except docker.errors.NotFound:
                kept = None
            if kept is None:
                self.client.volumes.create(
                    name, labels=labels.for_cluster(cluster.name, run, labels.ROLE_JOURNAL)
                )
        events.info(
            f"journal volume {name}"
            + (" (kept by `down --keep-data`: the master replays it)" if kept else "")
        )
        return [Mount(JOURNAL_DIR, name, type="volume")]

    def faults(self, cluster_name: str, run: str) -> Faults:
        from .docker_faults import DockerFaults

        return DockerFaults(self, cluster_name, run)

    def _start(
        self,
        cluster: Cluster,
        name: str,
        image: str,
        command: list[str],
        networks: list[str],
        resources: Any,
        keyfile: Path,
        object_labels: dict[str, str],
        mounts: list[Mount] | None = None,
        restart_policy: dict[str, Any] | None = None,
    ) -> None:
        first, *rest = [_network_name(cluster.name, n) for n in networks]
        hardening = _hardening(resources, keyfile)
        hardening["mounts"] = [*hardening.get("mounts", []), *(mounts or [])]
        with engine_call("create container", name):
            container = self.client.containers.create(
                image,
                command,
                name=name,
                hostname=name,
                labels=object_labels,
                detach=True,
                network=first,
                restart_policy=restart_policy,
                **hardening,
            )
        for net in rest:
            with engine_call(f"attach network {net} to container", name):
                self.client.networks.get(net).connect(container)
        with engine_call("start container", name):
            container.start()

    def _subnet_holders(self, subnet: str) -> list[SubnetHolder]:
        """The networks on the engine, ours or not, whose subnets overlap ``subnet``."""
        pools = []
        for net in self.client.networks.list():
            cluster = (net.attrs.get("Labels") or {}).get(labels.CLUSTER, "")
            for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
                if cfg.get("Subnet"):
                    pools.append((net.name, cfg["Subnet"], cluster))
        return overlapping(subnet, pools)

    # -- looking -------------------------------------------------------------------------------
    def inventory(self, cluster_name: str) -> Inventory:
        with engine_call("list", f"the objects of cluster {cluster_name!r}"):
            flt = labels.cluster_filter(cluster_name)
            inv = Inventory(cluster_name, backend=self.kind, nodes=[self._local_node()])
            by_id: dict[str, str] = {}
            for net in self.client.networks.list(filters=flt):
                net.reload()
                configs = net.attrs.get("IPAM", {}).get("Config") or [{}]
                info = NetworkInfo(
                    name=net.attrs["Labels"].get(labels.NETWORK, net.name),
                    engine_name=net.name,
                    subnet=configs[0].get("Subnet", ""),
                    id=net.id,
                    internal=bool(net.attrs.get("Internal")),
                )
                inv.networks.append(info)
                by_id[net.id] = info.name
            inv.networks.sort(key=lambda n: n.name)
            seen: set[str] = set()  # ours, then those joined by hand
            for c in self.client.containers.list(all=True, filters=flt):
                seen.add(c.id)
                info = self._container_info(c, by_id, managed=True)
                info.node = inv.nodes[0].name
                role = c.labels.get(labels.ROLE, "")
                if role == labels.ROLE_MASTER:
                    inv.master = info
                    inv.run = c.labels.get(labels.RUN, "")
                    inv.port = int(c.labels.get(labels.PORT, "0"))
                    inv.authkey_file = c.labels.get(labels.AUTHKEY_FILE, "")
                    inv.images["master"] = c.labels.get(labels.IMAGE, "")
                    # a master from before WORKER_IMAGE: this backend runs one image for both
                    worker_image = c.labels.get(labels.WORKER_IMAGE) or inv.images["master"]
                    inv.images.setdefault("worker", worker_image)
                elif role == labels.ROLE_WORKER:
                    inv.workers.append(info)
                    inv.images["worker"] = c.labels.get(labels.IMAGE, "")
            for net_id in by_id:  # containers on our networks that we did not start
                for c in self.client.containers.list(filters={"network": net_id}):
                    if c.id not in seen:
                        seen.add(c.id)
                        other = self._container_info(c, by_id, managed=False)
                        other.node = inv.nodes[0].name
                        inv.others.append(other)
        inv.workers.sort(key=lambda w: (w.group, int(self._index(w.name))))
        return inv

    @staticmethod
    def _index(name: str) -> str:
        tail = name.rsplit("-", 1)[-1]
        return tail if tail.isdigit() else "0"

    @staticmethod
    def _container_info(c: Any, nets: dict[str, str], managed: bool) -> ContainerInfo:
        settings = c.attrs.get("NetworkSettings", {})
        addresses = {}
        for endpoint in (settings.get("Networks") or {}).values():
            logical = nets.get(endpoint.get("NetworkID", ""))
            if logical and endpoint.get("IPAddress"):
                addresses[logical] = endpoint["IPAddress"]
        return ContainerInfo(
            name=c.name,
            id=c.id,
            role=c.labels.get(labels.ROLE, "") if managed else "",
            state=c.status,
            addresses=dict(sorted(addresses.items())),
            sandbox=settings.get("SandboxKey", "") or settings.get("SandboxID", ""),
            group=c.labels.get(labels.GROUP, ""),
            managed=managed,
            # a worker's --name is its container name (``_worker_args``)
            identity=c.name if managed and c.labels.get(labels.ROLE) == labels.ROLE_WORKER else "",
        )

    def _local_node(self) -> NodeInfo:
        """This engine's machine, asked once (``docker info``: its name)."""
        if self._node is None:
            info = self.client.info()
            self._node = NodeInfo(str(info.get("Name") or "local"), "", "local", "ready")
        return self._node

    def _master(self, cluster_name: str) -> Any:
        flt = labels.cluster_filter(cluster_name)
        flt["label"].append(f"{labels.ROLE}={labels.ROLE_MASTER}")
        found = self.client.containers.list(filters=flt)
        if not found:
            raise EngineError(f"cluster {cluster_name!r} has no running master: run `up` first")
        return found[0]

    # -- acting inside -------------------------------------------------------------------------
    def control(
        self,
        cluster_name: str,
        argv: list[str],
        on_stderr_line: Callable[[str], None] | None = None,
    ) -> ExecResult:
        """Runs inside the master's container, reaching it on 127.0.0.1 (its port is not
        published: nothing outside its networks can reach it)."""
        with engine_call("run a command in", f"the master of cluster {cluster_name!r}"):
            master = self._master(cluster_name)
            address = f"127.0.0.1:{master.labels.get(labels.PORT, '0')}"
            return exec_in(self.client, master.id, with_master(argv, address), on_stderr_line)

    def memory_usage(self, cluster_name: str) -> dict[str, int]:
        """From the engine's stats, less the page cache (what ``docker stats`` shows)."""
        out = {}
        with engine_call("read the memory of", f"cluster {cluster_name!r}"):
            for c in self.client.containers.list(filters=labels.cluster_filter(cluster_name)):
                mem = c.stats(stream=False).get("memory_stats", {})
                out[c.name] = int(mem.get("usage", 0) - mem.get("stats", {}).get("cache", 0))
        return out

    def logs(self, cluster_name: str, name: str | None, follow: bool) -> Iterator[str]:
        with engine_call("read the logs of", f"cluster {cluster_name!r}"):
            yield from self._logs(cluster_name, name, follow)

    def _logs(self, cluster_name: str, name: str | None, follow: bool) -> Iterator[str]:
        containers = self.client.containers.list(
            all=True, filters=labels.cluster_filter(cluster_name)
        )
        if name:
            wanted = {name, f"{cluster_name}-{name}"}
            containers = [c for c in containers if c.name in wanted]
            if not containers:
                raise EngineError(f"no container {name!r} in cluster {cluster_name!r}")
        containers.sort(key=lambda c: c.name)
        if follow and len(containers) == 1:
            for chunk in containers[0].logs(stream=True, follow=True):
                yield chunk.decode(errors="replace")
            return
        for c in containers:
            text = c.logs().decode(errors="replace")
            for line in text.splitlines():
                yield f"{c.name} | {line}\n" if len(containers) > 1 else line + "\n"

    def save_logs(self, cluster_name: str, directory: Path) -> list[Path]:
        """Write every container's log to ``directory`` (for CI artifacts)."""
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        flt = labels.cluster_filter(cluster_name)
        with engine_call("save the logs of", f"cluster {cluster_name!r}"):
            for c in self.client.containers.list(all=True, filters=flt):
                path = directory / f"{c.name}.log"
                path.write_bytes(c.logs())
                paths.append(path)
        return paths

    def probe(self, cluster: Cluster, images: Images, targets: list[str], run: str) -> ExecResult:
        with engine_call("probe the master of", f"cluster {cluster.name!r}"):
            return self._probe(cluster, images, targets, run)

    def _probe(self, cluster: Cluster, images: Images, targets: list[str], run: str) -> ExecResult:
        subnet = free_probe_subnet(self.client.api.networks())
        name = f"{cluster.name}-probe-{run}"
        net = self.client.networks.create(
            name,
            driver=NETWORK_DRIVER,
            internal=True,
            ipam=probe_ipam(subnet),
            labels=labels.for_cluster(cluster.name, run, labels.ROLE_PROBE),
        )
        container = None
        try:
            container = self.client.containers.create(  # a TCP probe needs no key
                images.master,
                ["probe", *targets, "--timeout", "3"],
                name=name,
                labels=labels.for_cluster(cluster.name, run, labels.ROLE_PROBE),
                network=net.name,
                detach=True,
                **_hardening(cluster.master.resources, None),
            )
            container.start()
            code = container.wait(timeout=60)["StatusCode"]
            output = container.logs().decode(errors="replace").strip()
            return ExecResult(int(code), output, f"probe network {subnet}")
        finally:
            if container is not None:
                self._remove_container(container)
            net.remove()


def _once(call: Callable[[], T]) -> T:
    return call()


def exec_in(
    client: docker.DockerClient,
    container_id: str,
    argv: list[str],
    on_stderr_line: Callable[[str], None] | None = None,
    each_call: Callable[[Callable[[], Any]], Any] = _once,
) -> ExecResult:
    """Run ``python -m distproc ARGV`` in a running container of ``client``'s engine, with
    its stderr lines passed on as they come (a job's progress). Each of its three API calls
    goes through ``each_call`` (the swarm backend tries a refused ssh channel again there:
    a call whose channel was refused sent nothing, while running the whole command again
    would submit a job twice)."""
    api = client.api
    exec_id = each_call(
        lambda: api.exec_create(container_id, PROGRAM + argv, stdout=True, stderr=True)
    )["Id"]
    out: list[bytes] = []
    err: list[bytes] = []
    pending = b""
    stream = each_call(lambda: api.exec_start(exec_id, stream=True, demux=True))
    for stdout, stderr in stream:
        if stdout:
            out.append(stdout)
        if stderr:
            err.append(stderr)
            if on_stderr_line is not None:
                pending += stderr
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    on_stderr_line(line.decode(errors="replace"))
    code = each_call(lambda: api.exec_inspect(exec_id))["ExitCode"]
    return ExecResult(
        code if code is not None else 1,
        b"".join(out).decode(errors="replace"),
        b"".join(err).decode(errors="replace"),
    )


def free_probe_subnet(networks: list[dict[str, Any]]) -> ipaddress.IPv4Network:
    """A /28 of ``PROBE_RANGE`` that overlaps none of ``networks`` (the engine's, as its API
    lists them), from the top down."""
    used = []
    for n in networks:
        for cfg in (n.get("IPAM") or {}).get("Config") or []:
            with contextlib.suppress(ValueError, KeyError):
                used.append(ipaddress.ip_network(cfg["Subnet"]))
    for candidate in reversed(list(PROBE_RANGE.subnets(new_prefix=28))):
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise EngineError(f"no free /28 left in {PROBE_RANGE} for a probe network")


def probe_ipam(subnet: ipaddress.IPv4Network) -> IPAMConfig:
    return IPAMConfig(
        pool_configs=[IPAMPool(subnet=str(subnet), gateway=str(subnet.network_address + 1))]
    )


def remove_network(net: Any) -> int:
    """Remove ``net`` (a docker-py ``Network``), detaching what is still attached first: a
    container joined by hand is detached, never removed. 1 if it was removed, 0 if gone."""
    net.reload()
    for attached in net.attrs.get("Containers") or {}:
        with contextlib.suppress(docker.errors.APIError):
            net.disconnect(attached, force=True)
    try:
        net.remove()
    except docker.errors.NotFound:
        return 0
    return 1
