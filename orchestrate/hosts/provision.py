"""``provision`` and ``leave``: a swarm formed over the hosts and undone, over ssh.

Reads every host's engine (``observe``), asks ``plan.plan`` what to change, applies it in
order and reads again: the second read must plan nothing, or provisioning failed and says
what is left. Engines are reached with ``orchestrate.remote`` (host keys verified).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
import docker.errors

from .. import labels, remote
from ..backends.base import EngineError
from ..events import Events
from ..model import SWARM_ADDRESS_POOL, SWARM_POOL_SUBNET_SIZE, Cluster, Host
from .plan import Action, HostState, NodeState, PlanError, plan
from .ship import ship_images

SWARM_PORT = 2377
#: How long a joined node may take to show as ready in the manager's list.
JOIN_WAIT = 60.0


class Hosts:
    """The hosts of a cluster and their engines (each connected once, on first use)."""

    def __init__(self, hosts: Sequence[Host], trust_new: bool = False) -> None:
        self.hosts = list(hosts)
        self.trust_new = trust_new
        self._engines: dict[str, docker.DockerClient] = {}

    def engine(self, host: Host) -> docker.DockerClient:
        if host.name not in self._engines:
            if self.trust_new:  # record the key once, then connect as usual
                remote.ssh_client(host, trust_new=True).close()
            self._engines[host.name] = remote.engine(host)
        return self._engines[host.name]

    def by_name(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)


def observe(
    hosts: Hosts, images: Sequence[str] = ()
) -> tuple[dict[str, HostState], dict[str, NodeState]]:
    """Every host's swarm state and images, and the node list of the first host that
    manages a swarm (in parallel: one ssh connection per host)."""

    def one(host: Host) -> tuple[str, HostState]:
        client = hosts.engine(host)
        info = client.info()
        swarm = info.get("Swarm") or {}
        present = set()
        for image in images:
            with contextlib.suppress(docker.errors.ImageNotFound):
                present.add(client.images.get(image).id)
        return host.name, HostState(
            swarm=swarm.get("LocalNodeState", "inactive"),
            node_id=swarm.get("NodeID", ""),
            is_manager=bool(swarm.get("ControlAvailable")),
            cluster_id=(swarm.get("Cluster") or {}).get("ID", ""),
            images=frozenset(present),
        )

    with ThreadPoolExecutor(max(1, len(hosts.hosts))) as pool:
        states = dict(pool.map(one, hosts.hosts))
    nodes: dict[str, NodeState] = {}
    for host in hosts.hosts:
        st = states[host.name]
        if st.is_manager and st.swarm == "active":
            for n in hosts.engine(host).api.nodes():
                spec = n.get("Spec", {})
                nodes[n["ID"]] = NodeState(
                    n["ID"], spec.get("Role", ""), dict(spec.get("Labels") or {}),
                    (n.get("Status") or {}).get("State", ""),
                )  # fmt: skip
            break
    return states, nodes


def provision(
    cluster: Cluster, events: Events, images: Sequence[str] = (), trust_new: bool = False
) -> list[Action]:
    """Form the swarm over ``cluster.hosts`` as the file says, label its nodes and put
    ``images`` (ids) on every host that lacks them. Idempotent: returns what it did ([] when
    nothing needed doing). Raises ``PlanError`` for a state it will not change by itself,
    ``EngineError`` (``HostUnreachable``) for a host it cannot reach."""
    hosts = Hosts(cluster.hosts, trust_new)
    events.step(f"checking {len(hosts.hosts)} host(s) for the swarm")
    with _engine_errors("read the state of the hosts"):
        states, nodes = observe(hosts, images)
    actions = plan(hosts.hosts, states, nodes, images)
    if not actions:
        events.info("hosts: the swarm is formed and provisioned (nothing to change)")
        return []
    for action in actions:
        events.step(f"hosts: {action.describe()}")
        with _engine_errors(action.describe()):
            _apply(hosts, action, events)
    with _engine_errors("read the state of the hosts again"):
        _wait_ready(hosts)
        states, nodes = observe(hosts, images)
    left = plan(hosts.hosts, states, nodes, images)
    if left:
        raise PlanError("provisioning left work undone: " + "; ".join(a.describe() for a in left))
    return actions


def _apply(hosts: Hosts, action: Action, events: Events) -> None:
    host = hosts.by_name(action.host)
    client = hosts.engine(host)
    if action.kind == "init":
        client.swarm.init(
            advertise_addr=host.address,
            listen_addr=f"0.0.0.0:{SWARM_PORT}",
            default_addr_pool=[str(SWARM_ADDRESS_POOL)],
            subnet_size=SWARM_POOL_SUBNET_SIZE,
        )
    elif action.kind == "join":
        leader, manager = _leader(hosts)
        tokens = manager.swarm.attrs["JoinTokens"]
        client.swarm.join(
            remote_addrs=[f"{leader.address}:{SWARM_PORT}"],
            join_token=tokens["Manager" if host.role == "manager" else "Worker"],
            advertise_addr=host.address,
            listen_addr=f"0.0.0.0:{SWARM_PORT}",
        )
    elif action.kind in ("label", "role"):
        _, manager = _leader(hosts)
        node_id = client.info()["Swarm"]["NodeID"]
        node = manager.api.inspect_node(node_id)
        spec = dict(node["Spec"])
        if action.kind == "label":
            spec["Labels"] = {**(spec.get("Labels") or {}), **dict(action.labels)}
        else:
            spec["Role"] = host.role
        manager.api.update_node(node_id, node["Version"]["Index"], spec)
    elif action.kind == "ship":
        ship_images(hosts, host, list(action.images), events)


def _leader(hosts: Hosts) -> tuple[Host, docker.DockerClient]:
    """The first manager host that manages the swarm now, and its engine."""
    for host in hosts.hosts:
        if host.role != "manager":
            continue
        client = hosts.engine(host)
        swarm = client.info().get("Swarm") or {}
        if swarm.get("ControlAvailable"):
            client.swarm.reload()
            return host, client
    raise PlanError("no manager host manages a swarm yet")


def _wait_ready(hosts: Hosts) -> None:
    """Until every host shows in the manager's list as ready (bounded)."""
    _, manager = _leader(hosts)
    deadline = time.monotonic() + JOIN_WAIT
    while True:
        states = {
            (n.get("Spec", {}).get("Labels") or {}).get(labels.HOST)
            or n["Description"]["Hostname"]: (n.get("Status") or {}).get("State")
            for n in manager.api.nodes()
        }
        waiting = [h.name for h in hosts.hosts if states.get(h.name) not in (None, "ready")]
        if not waiting or time.monotonic() > deadline:
            return
        time.sleep(0.5)


def leave(cluster: Cluster, events: Events) -> int:
    """Undo ``provision``: the workers leave, the managers remove them from the node list,
    then the managers leave (the last one ends the swarm). Idempotent; returns how many
    hosts left."""
    hosts = Hosts(cluster.hosts)
    left = 0
    with _engine_errors("read the state of the hosts"):
        states, _ = observe(hosts)
    order = sorted(hosts.hosts, key=lambda h: h.role == "manager")  # workers first
    for host in order:
        if states[host.name].swarm == "inactive":
            continue
        events.step(f"hosts: {host.name} leaves the swarm")
        with _engine_errors(f"leave the swarm on {host.name}"):
            hosts.engine(host).swarm.leave(force=True)
        left += 1
        _forget_node(hosts, states[host.name].node_id, host)
    return left


def _forget_node(hosts: Hosts, node_id: str, gone: Host) -> None:
    """Remove a node that left from a remaining manager's list (best effort)."""
    for host in hosts.hosts:
        if host is gone or host.role != "manager":
            continue
        with contextlib.suppress(docker.errors.APIError, EngineError):
            client = hosts.engine(host)
            if (client.info().get("Swarm") or {}).get("ControlAvailable"):
                client.api.remove_node(node_id, force=True)
                return


@contextlib.contextmanager
def _engine_errors(doing: str) -> Any:
    """An engine's refusal while provisioning as one plain line (``EngineError``)."""
    try:
        yield
    except docker.errors.APIError as exc:
        said = str(exc.explanation or exc)
        raise EngineError(f"hosts: could not {doing}: {said}", raw=str(exc)) from None
    except docker.errors.DockerException as exc:
        raise EngineError(f"hosts: could not {doing}: {exc}") from None
