"""The swarm backend: a cluster as Docker Swarm services over the machines of ``hosts:``.

Driven through the Docker SDK, over ssh (``orchestrate.remote``), against the first manager
of the swarm; per-node work (exec, logs, stats, a container's namespace) goes to the engine
of the node a task runs on. Swarm does the distributed part: scheduling by placement,
overlay networks across machines, secrets, and rescheduling the tasks of a machine that is
lost. What Swarm does not do, ``orchestrate.hosts`` does over ssh: forming the swarm,
labelling its nodes and shipping images without a registry (``build_images`` runs it).

Images are referred to by their full id (``sha256:...``), present on every node before a
service names them: a node resolves no tag and contacts no registry.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import paramiko
from docker.types import IPAMConfig, IPAMPool

from ... import labels, remote
from ...events import Events
from ...model import Cluster, Host
from ..base import (
    Backend,
    ContainerInfo,
    EngineError,
    EngineLimits,
    ExecResult,
    Images,
    Inventory,
    NetworkInfo,
    NodeInfo,
    with_master,
)
from ..docker_errors import engine_call
from ..docker_local import DockerBackend, exec_in, free_probe_subnet, probe_ipam
from ..faults import Faults
from . import specs

#: An ssh channel the node refused (sshd serves 10 sessions per connection by default, and
#: the SDK opens one per API connection, ``docker system dial-stdio``; a hijacked exec's
#: lingers a moment): tried again, as no byte went over it. ``status`` asked while a job
#: streamed from the master's node was refused 4 times in 40 (a chaos scenario does so).
CHANNEL_TRIES = 5
T = TypeVar("T")
#: Bounds on waiting for Swarm (it converges asynchronously).
REMOVE_WAIT = 60.0
PROBE_WAIT = 90.0
MASTER_WAIT = 120.0
POLL = 0.5
#: Task states of a task that is, or will soon be, running (Swarm's own words).
LIVE_STATES = frozenset({"new", "pending", "assigned", "accepted", "preparing", "ready",
                         "starting", "running"})  # fmt: skip


class SwarmBackend(Backend):
    """A cluster on a Docker Swarm of ``hosts`` (see the module docstring)."""

    kind = "swarm"

    def __init__(self, hosts: list[Host], local: DockerBackend | None = None) -> None:
        if not hosts:
            raise EngineError("the swarm backend needs hosts: list them under `hosts:`")
        self.hosts = hosts
        self._local = local
        self._engines: dict[str, docker.DockerClient] = {}
        self.unreachable: list[str] = []

    @classmethod
    def for_cluster(cls, cluster: Cluster) -> SwarmBackend:
        return cls(list(cluster.hosts))

    # -- engines -----------------------------------------------------------------------------
    def engine(self, host: Host) -> docker.DockerClient:
        """``host``'s engine over ssh, connected once and kept (again after its session died:
        a machine that went down and came back)."""
        client = self._engines.get(host.name)
        if client is None or not remote.alive(client):
            self._engines[host.name] = client = remote.engine(host)
        return client

    def answering(self) -> Iterator[tuple[Host, docker.DockerClient]]:
        """(host, engine) of every host that answers now; the others are left out, and
        named in ``self.unreachable`` (a machine lost: its containers went with it)."""
        self.unreachable = []
        for host in self.hosts:
            try:
                client = self.engine(host)
                client.ping()
            except (EngineError, docker.errors.DockerException, OSError,
                    paramiko.SSHException) as exc:  # fmt: skip
                self.unreachable.append(f"{host.name} ({exc})")
                continue
            yield host, client

    @property
    def manager(self) -> docker.DockerClient:
        """The engine of the first manager that answers."""
        managers = [h for h in self.hosts if h.role == "manager"]
        last: EngineError | None = None
        for host in managers:
            try:
                return self.engine(host)
            except EngineError as exc:  # the next manager, if there is one
                last = exc
        raise last or EngineError("no manager among the hosts")

    def host_of_node(self, node: dict[str, Any]) -> Host | None:
        """The host of ``hosts:`` a swarm node is (by the label provisioning gave it)."""
        name = (node.get("Spec", {}).get("Labels") or {}).get(labels.HOST, "")
        return next((h for h in self.hosts if h.name == name), None)

    def _nodes(self) -> dict[str, dict[str, Any]]:
        with engine_call("list", "the swarm's nodes"):
            return {n["ID"]: n for n in self.manager.api.nodes()}

    @property
    def local(self) -> DockerBackend:
        """This machine's engine, where images are built before they are shipped."""
        if self._local is None:
            self._local = DockerBackend()
        return self._local

    # -- images ------------------------------------------------------------------------------
    def build_images(self, cluster: Cluster, events: Events) -> Images:
        """Build on this machine's engine, then provision: the swarm formed over the hosts,
        its nodes labelled, and the image (by id) on every node that lacks it."""
        from ...hosts import provision

        built = self.local.build_images(cluster, events)
        image_id = self.local.client.images.get(built.master).id
        provision(cluster, events, images=[image_id])
        return Images(master=image_id, worker=image_id)

    def engine_limits(self) -> EngineLimits:
        """The most one node offers: a task fits if one of the hosts can run it."""
        cpus, memory = 0, 0
        for host in self.hosts:
            with engine_call("ask", f"{host.name} for its limits (docker info)"):
                info = self.engine(host).info()
            cpus = max(cpus, int(info.get("NCPU") or 0))
            memory = max(memory, int(info.get("MemTotal") or 0))
        return EngineLimits(cpus=cpus, memory=memory)

    # -- bring-up ----------------------------------------------------------------------------
    def create(
        self, cluster: Cluster, run: str, images: Images, authkey: Path, events: Events
    ) -> None:
        """Overlays, the key as a Swarm secret, then the master's and the groups' services.
        The key's bytes go to the manager once, over ssh, into the swarm's encrypted store.
        An encrypted overlay is refused on hosts whose kernels cannot do IPsec ESP, before
        anything is made: Swarm would create it there and drop every packet on it."""
        from ...hosts import refuse_encryption_without_esp

        refuse_encryption_without_esp(cluster, events)
        api = self.manager.api
        network_ids = {}
        events.step(f"creating {len(cluster.networks)} overlay network(s)")
        for net in cluster.networks:
            name = specs.network_name(cluster, net.name)
            options = {"encrypted": ""} if net.encrypted else None
            with engine_call("create network", name, subnet=net.subnet):
                created = api.create_network(
                    name,
                    driver="overlay",
                    options=options,
                    internal=net.internal,
                    attachable=True,
                    check_duplicate=True,
                    ipam=IPAMConfig(
                        pool_configs=[IPAMPool(subnet=net.subnet, gateway=str(net.gateway))]
                    ),
                    labels=labels.for_cluster(
                        cluster.name, run, labels.ROLE_NETWORK, network=net.name
                    ),
                )
            network_ids[net.name] = created["Id"]
            events.info(f"network {name} {net.subnet} (overlay{', internal' * net.internal})")
        with engine_call("create secret", specs.secret_name(cluster, run)):
            secret = api.create_secret(
                specs.secret_name(cluster, run),
                authkey.read_bytes(),
                labels=labels.for_cluster(cluster.name, run, labels.ROLE_SECRET),
            )
        secret_ref = (secret["ID"], specs.secret_name(cluster, run))
        events.step(f"starting the master service {cluster.master_name}")
        with engine_call("create service", cluster.master_name):
            api.create_service(
                **specs.master_service(
                    cluster, run, images.master, images.worker, secret_ref, network_ids
                )
            )
        self._wait_master_running(cluster, events)
        for group in cluster.workers:
            name = specs.group_service(cluster, group.name)
            events.step(f"starting the service {name} ({group.count} replicas)")
            with engine_call("create service", name):
                api.create_service(
                    **specs.worker_service(
                        cluster, group, run, images.worker, secret_ref, network_ids
                    )
                )

    def _wait_master_running(self, cluster: Cluster, events: Events) -> None:
        """Until the master's task runs (Swarm schedules it asynchronously), so that ``create``
        returns with the master started, as on the local engine; bounded, and a task that
        Swarm cannot place or start is named with Swarm's own reason."""
        api = self.manager.api
        deadline = time.monotonic() + MASTER_WAIT
        while True:
            tasks = api.tasks(filters={"service": cluster.master_name})
            if any(t["Status"]["State"] == "running" for t in tasks):
                return
            if time.monotonic() > deadline:
                why = "; ".join(_task_status(t) for t in tasks) or "no task scheduled"
                raise EngineError(
                    f"the master service {cluster.master_name} did not start within "
                    f"{MASTER_WAIT:.0f}s ({why})"
                )
            time.sleep(POLL)

    def worker_names(self, cluster: Cluster) -> list[str]:
        return specs.worker_names(cluster)

    # -- teardown ----------------------------------------------------------------------------
    def sweep(
        self, cluster_name: str, events: Events, run: str | None = None, keep_data: bool = False
    ) -> int:
        """Services, then (once their tasks' containers are gone from every node) networks,
        secrets and (unless ``keep_data``) the journal volume on every node. Bounded: a
        node that keeps a container past ``REMOVE_WAIT`` is named."""
        flt = labels.cluster_filter(cluster_name)
        if run is not None:
            flt["label"].append(f"{labels.RUN}={run}")
        api = self.manager.api
        removed = 0
        with engine_call("remove", f"the services of cluster {cluster_name!r}"):
            for service in api.services(filters=flt):
                with contextlib.suppress(docker.errors.NotFound):
                    api.remove_service(service["ID"])
                    removed += 1
        self._wait_containers_gone(cluster_name, run)
        with engine_call("remove", f"the networks and secrets of cluster {cluster_name!r}"):
            for net in api.networks(filters=flt):
                removed += self._remove_network(api, net["Id"])
            for secret in api.secrets(filters=flt):
                with contextlib.suppress(docker.errors.NotFound):
                    api.remove_secret(secret["ID"])
                    removed += 1
        if not keep_data:
            for host, client in list(self.answering()):
                with engine_call(
                    "remove", f"the volumes of cluster {cluster_name!r} on {host.name}"
                ):
                    for volume in client.volumes.list(filters=flt):
                        with contextlib.suppress(docker.errors.NotFound):
                            volume.remove()
                            removed += 1
        return removed

    @staticmethod
    def _remove_network(api: Any, net_id: str) -> int:
        """An overlay is in use for a moment after its last task's container is gone (the
        endpoint is released asynchronously): retried, bounded."""
        deadline = time.monotonic() + REMOVE_WAIT
        while True:
            try:
                api.remove_network(net_id)
                return 1
            except docker.errors.NotFound:
                return 0
            except docker.errors.APIError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(POLL)

    def _wait_containers_gone(
        self, cluster_name: str, run: str | None, role: str | None = None
    ) -> None:
        """Until no container of the cluster (of ``run``, of ``role``) is left on any node."""
        flt = labels.cluster_filter(cluster_name)
        if run is not None:
            flt["label"].append(f"{labels.RUN}={run}")
        if role is not None:
            flt["label"].append(f"{labels.ROLE}={role}")
        deadline = time.monotonic() + REMOVE_WAIT
        for host, client in list(self.answering()):
            while True:
                with engine_call("list", f"the containers on {host.name}"):
                    left = client.api.containers(all=True, filters=flt)
                if not left:
                    break
                if time.monotonic() > deadline:
                    names = ", ".join(c["Names"][0].lstrip("/") for c in left)
                    raise EngineError(
                        f"{host.name} still runs {names} {REMOVE_WAIT:.0f}s after their "
                        "services were removed"
                    )
                time.sleep(POLL)

    # -- looking -----------------------------------------------------------------------------
    def inventory(self, cluster_name: str) -> Inventory:
        """Nodes, overlays and the newest task of every slot, with the addresses Swarm gave
        it and the namespace of its container (asked of the node it runs on)."""
        flt = labels.cluster_filter(cluster_name)
        with engine_call("list", f"the objects of cluster {cluster_name!r}"):
            api = self.manager.api
            nodes = self._nodes()
            inv = Inventory(cluster_name, backend=self.kind)
            node_names = {}
            for node_id, node in nodes.items():
                host = self.host_of_node(node)
                name = host.name if host else node["Description"]["Hostname"]
                node_names[node_id] = name
                inv.nodes.append(
                    NodeInfo(
                        name,
                        node.get("Status", {}).get("Addr", ""),
                        node.get("Spec", {}).get("Role", ""),
                        node.get("Status", {}).get("State", ""),
                    )
                )
            inv.nodes.sort(key=lambda n: n.name)
            by_id: dict[str, str] = {}
            for net in api.networks(filters=flt):
                logical = (net.get("Labels") or {}).get(labels.NETWORK, net["Name"])
                configs = (net.get("IPAM") or {}).get("Config") or [{}]
                inv.networks.append(
                    NetworkInfo(
                        logical,
                        net["Name"],
                        configs[0].get("Subnet", ""),
                        id=net["Id"],
                        internal=bool(net.get("Internal")),
                    )
                )
                by_id[net["Id"]] = logical
            inv.networks.sort(key=lambda n: n.name)
            for service in api.services(filters=flt):
                self._add_tasks(inv, api, service, by_id, node_names)
        down = {n.name for n in inv.nodes if n.state != "ready"}
        for c in [*([inv.master] if inv.master else []), *inv.workers]:
            if c.node in down and c.state in LIVE_STATES:
                c.state = "node down"  # Swarm still says what it last heard from the node
        inv.workers.sort(key=lambda w: (w.group, _slot(w.identity or w.name), w.name))
        self._add_sandboxes(inv, nodes)
        return inv

    def _add_tasks(
        self,
        inv: Inventory,
        api: Any,
        service: dict[str, Any],
        nets: dict[str, str],
        node_names: dict[str, str],
    ) -> None:
        spec_labels = service["Spec"].get("Labels") or {}
        role = spec_labels.get(labels.ROLE, "")
        if role not in (labels.ROLE_MASTER, labels.ROLE_WORKER):
            return
        name = service["Spec"]["Name"]
        by_slot: dict[int, list[dict[str, Any]]] = {}
        for task in api.tasks(filters={"service": service["ID"]}):
            by_slot.setdefault(int(task.get("Slot") or 0), []).append(task)
        for slot, tasks in sorted(by_slot.items()):
            tasks.sort(key=_newest_first)
            newest = _task_info(tasks[0], name, role, slot, nets, node_names)
            newest.group = spec_labels.get(labels.GROUP, "")
            if role == labels.ROLE_MASTER:
                inv.master = newest
                inv.run = spec_labels.get(labels.RUN, "")
                inv.port = int(spec_labels.get(labels.PORT, "0"))
                inv.images["master"] = spec_labels.get(labels.IMAGE, "")
                inv.images.setdefault("worker", spec_labels.get(labels.WORKER_IMAGE, ""))
                continue
            inv.workers.append(newest)
            inv.images["worker"] = spec_labels.get(labels.IMAGE, "")
            # earlier tasks of the slot (Swarm keeps a few): a task whose machine was lost
            # still owns the addresses its results came from, under its own name
            for task in tasks[1:]:
                earlier = _task_info(task, name, role, slot, nets, node_names)
                if earlier.addresses:
                    earlier.name = f"{newest.name}.{task['ID'][:10]}"
                    earlier.group = newest.group
                    inv.workers.append(earlier)

    def _add_sandboxes(self, inv: Inventory, nodes: dict[str, dict[str, Any]]) -> None:
        """Each running task's network namespace, from its node's engine (best effort: a
        node that is down has no namespace to show)."""
        by_node: dict[str, list[ContainerInfo]] = {}
        for c in [*([inv.master] if inv.master else []), *inv.workers]:
            if c.state == "running" and c.id:
                by_node.setdefault(c.node, []).append(c)
        for host, client in self.answering():
            for c in by_node.get(host.name, []):
                with contextlib.suppress(docker.errors.DockerException):
                    attrs = client.api.inspect_container(c.id)
                    settings = attrs.get("NetworkSettings") or {}
                    c.sandbox = settings.get("SandboxKey") or settings.get("SandboxID", "")

    def _running_task(self, cluster_name: str, service: str) -> tuple[Host, str]:
        """(the host, the container id) of the running task of ``service``."""
        api = self.manager.api
        tasks = api.tasks(filters={"service": service, "desired-state": "running"})
        running = [t for t in tasks if t["Status"]["State"] == "running"]
        if not running:
            raise EngineError(f"cluster {cluster_name!r} has no running {service}: run `up` first")
        task = running[0]
        node = api.inspect_node(task["NodeID"])
        host = self.host_of_node(node)
        if host is None:
            raise EngineError(f"{service} runs on node {node['Description']['Hostname']}, "
                              "which is not in hosts:")  # fmt: skip
        return host, task["Status"]["ContainerStatus"]["ContainerID"]

    # -- acting inside -----------------------------------------------------------------------
    def control(
        self,
        cluster_name: str,
        argv: list[str],
        on_stderr_line: Callable[[str], None] | None = None,
    ) -> ExecResult:
        """In the master's container, on the node its task runs on, reaching it on 127.0.0.1
        (its port is published nowhere)."""
        with engine_call("run a command in", f"the master of cluster {cluster_name!r}"):
            host, container = self._channel(
                lambda: self._running_task(cluster_name, f"{cluster_name}-master")
            )
            port = self._channel(lambda: self._master_port(cluster_name))
            full = with_master(argv, f"127.0.0.1:{port}")
            return exec_in(self.engine(host), container, full, on_stderr_line, self._channel)

    @staticmethod
    def _channel(call: Callable[[], T]) -> T:
        """``call()``, tried again (``CHANNEL_TRIES`` in all) when the node refuses its ssh
        channel: a refused channel carried no request, so trying again cannot do anything
        twice (running a whole ``submit`` again would: a second job)."""
        for attempt in range(1, CHANNEL_TRIES + 1):
            try:
                return call()
            except paramiko.ChannelException as exc:
                if attempt == CHANNEL_TRIES:
                    raise EngineError(
                        f"the master's node refused an ssh channel {CHANNEL_TRIES} times: "
                        f"{exc} (its sshd's MaxSessions?)"
                    ) from None
            time.sleep(POLL * attempt)
        raise AssertionError("unreachable")

    def faults(self, cluster_name: str, run: str) -> Faults:
        from .faults import SwarmFaults

        return SwarmFaults(self, cluster_name, run)

    def _master_port(self, cluster_name: str) -> str:
        services = self.manager.api.services(filters={"name": f"{cluster_name}-master"})
        for s in services:
            return (s["Spec"].get("Labels") or {}).get(labels.PORT, "0")
        raise EngineError(f"cluster {cluster_name!r} has no master service: run `up` first")

    def _containers(self, cluster_name: str, name: str | None = None) -> Iterator[tuple[Host, Any]]:
        """(host, container) for every container of the cluster on every node (running or
        not), or those of one task (``alpha-1`` or ``<cluster>-alpha-1``)."""
        wanted = None if name is None else {name, f"{cluster_name}-{name}"}
        for host, client in list(self.answering()):
            with engine_call("list", f"the containers on {host.name}"):
                found = client.containers.list(
                    all=True, filters=labels.cluster_filter(cluster_name)
                )
            for c in found:
                hostname = c.attrs.get("Config", {}).get("Hostname", "")
                if wanted is None or hostname in wanted:
                    yield host, c

    def logs(self, cluster_name: str, name: str | None, follow: bool) -> Iterator[str]:
        with engine_call("read the logs of", f"cluster {cluster_name!r}"):
            found = sorted(self._containers(cluster_name, name), key=lambda hc: _hostname(hc[1]))
            if name and not found:
                raise EngineError(f"no container {name!r} in cluster {cluster_name!r}")
            if follow and len(found) == 1:
                for chunk in found[0][1].logs(stream=True, follow=True):
                    yield chunk.decode(errors="replace")
                return
            for host, c in found:
                prefix = f"{_hostname(c)}@{host.name} | " if len(found) > 1 else ""
                for line in c.logs().decode(errors="replace").splitlines():
                    yield prefix + line + "\n"

    def save_logs(self, cluster_name: str, directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        with engine_call("save the logs of", f"cluster {cluster_name!r}"):
            for host, c in self._containers(cluster_name):
                path = directory / f"{_hostname(c)}@{host.name}-{c.short_id}.log"
                path.write_bytes(c.logs())
                paths.append(path)
        if self.unreachable:
            path = directory / "unreachable-hosts.txt"
            path.write_text("no logs from these hosts (they did not answer):\n"
                            + "\n".join(self.unreachable) + "\n")  # fmt: skip
            paths.append(path)
        return paths

    def memory_usage(self, cluster_name: str) -> dict[str, int]:
        out = {}
        with engine_call("read the memory of", f"cluster {cluster_name!r}"):
            for _, c in self._containers(cluster_name):
                if c.status == "running":
                    mem = c.stats(stream=False).get("memory_stats", {})
                    usage = mem.get("usage", 0) - mem.get("stats", {}).get("cache", 0)
                    out[_hostname(c)] = int(usage)
        return out

    def probe(self, cluster: Cluster, images: Images, targets: list[str], run: str) -> ExecResult:
        """A one-shot service on an overlay of its own, trying the master's addresses."""
        with engine_call("probe the master of", f"cluster {cluster.name!r}"):
            return self._probe(cluster, images, targets, run)

    def _probe(self, cluster: Cluster, images: Images, targets: list[str], run: str) -> ExecResult:
        api = self.manager.api
        subnet = free_probe_subnet(api.networks())
        name = f"{cluster.name}-probe-{run}"
        net = api.create_network(
            name,
            driver="overlay",
            internal=True,
            attachable=True,
            ipam=probe_ipam(subnet),
            labels=labels.for_cluster(cluster.name, run, labels.ROLE_PROBE),
        )
        service = None
        try:
            service = api.create_service(
                **specs.probe_service(cluster, run, images.master, targets, net["Id"])
            )
            task = self._wait_done(api, service["ID"])
            status = task["Status"]
            code = int((status.get("ContainerStatus") or {}).get("ExitCode", -1))
            output = self._task_output(api, task)
            return ExecResult(code, output, f"probe overlay {subnet}")
        finally:
            if service is not None:
                with contextlib.suppress(docker.errors.NotFound):
                    api.remove_service(service["ID"])
            self._wait_containers_gone(cluster.name, run, labels.ROLE_PROBE)
            self._remove_network(api, net["Id"])

    def _wait_done(self, api: Any, service_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + PROBE_WAIT
        while time.monotonic() < deadline:
            for task in api.tasks(filters={"service": service_id}):
                if task["Status"]["State"] in ("complete", "failed", "rejected", "shutdown"):
                    return task
            time.sleep(POLL)
        raise EngineError(f"the probe did not finish within {PROBE_WAIT:.0f}s")

    def _task_output(self, api: Any, task: dict[str, Any]) -> str:
        host = self.host_of_node(api.inspect_node(task["NodeID"]))
        container = (task["Status"].get("ContainerStatus") or {}).get("ContainerID")
        if host is None or not container:
            return task["Status"].get("Err", "")
        return self.engine(host).api.logs(container).decode(errors="replace").strip()


def _task_status(task: dict[str, Any]) -> str:
    status = task["Status"]
    return f"{status['State']}: {status.get('Err') or status.get('Message', '')}"


def _newest_first(task: dict[str, Any]) -> tuple[bool, float]:
    """The task Swarm wants running first, then the most recently created: a task's version
    moves on whenever its state does (the lost machine's, when it comes back), not only when
    it is made."""
    created = task.get("CreatedAt", "")
    try:
        stamp = datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        stamp = 0.0
    return (task.get("DesiredState") != "running", -stamp)


def _slot(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _hostname(container: Any) -> str:
    return container.attrs.get("Config", {}).get("Hostname", "") or container.name


def _task_info(
    task: dict[str, Any],
    service: str,
    role: str,
    slot: int,
    nets: dict[str, str],
    node_names: dict[str, str],
) -> ContainerInfo:
    """A task as a ContainerInfo: named by its slot (the worker's name), on its node."""
    addresses = {}
    for attachment in task.get("NetworksAttachments") or []:
        logical = nets.get(attachment.get("Network", {}).get("ID", ""))
        for cidr in attachment.get("Addresses") or []:
            if logical:
                addresses[logical] = cidr.split("/", 1)[0]
    name = service if role == labels.ROLE_MASTER else f"{service}-{slot}"
    status = task.get("Status") or {}
    state = status.get("State", "")
    return ContainerInfo(
        name=name,
        id=(status.get("ContainerStatus") or {}).get("ContainerID", ""),
        role=role,
        state=state,
        addresses=dict(sorted(addresses.items())),
        node=node_names.get(task.get("NodeID", ""), ""),
        identity=name if role == labels.ROLE_WORKER else "",
    )
