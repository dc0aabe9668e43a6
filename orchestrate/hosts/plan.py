"""What ``provision`` would do to the hosts, decided from what they are now: pure.

``observe`` (in ``provision``) reads each host's engine into a ``HostState``; ``plan`` turns
the hosts of the file and those states into ``Action``s; ``provision`` applies them in order.
Run twice, the second plan is empty: that is what makes provisioning idempotent, and what
the unit tests check against made-up states.

A swarm is formed over the hosts as the file says: the first manager inits it (unless one of
the hosts already runs it), the others join with the role the file gives them, every node
carries the labels of its host plus ``io.distproc.host`` (its name, which placement
constraints use) and ``io.distproc.managed``. A host that belongs to another swarm is not
taken over: that is an error naming it, and ``leave`` (or ``docker swarm leave``) its way out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import labels
from ..model import Host, OrchestrateError


class PlanError(OrchestrateError):
    """The hosts are in a state provisioning will not change by itself (exit 1)."""


@dataclass(frozen=True)
class HostState:
    """What one host's engine says about itself (``docker info`` and ``docker images``)."""

    swarm: str = "inactive"  # LocalNodeState: inactive, pending, active, error, locked
    node_id: str = ""
    is_manager: bool = False
    #: the swarm's id, as its managers know it ("" on a worker node or outside a swarm)
    cluster_id: str = ""
    images: frozenset[str] = frozenset()  # image ids present


@dataclass(frozen=True)
class NodeState:
    """A node as the swarm's managers list it."""

    node_id: str
    role: str  # manager or worker
    labels: dict[str, str] = field(default_factory=dict)
    state: str = "ready"  # ready, down, unknown, disconnected


@dataclass(frozen=True)
class Action:
    """One step: ``kind`` is init, join, label, role or ship; ``host`` the host it acts on."""

    kind: str
    host: str
    detail: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    images: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.kind} {self.host}" + (f": {self.detail}" if self.detail else "")


def node_labels(host: Host) -> dict[str, str]:
    """The labels a host's node carries: its own, then ours."""
    return {**host.labels, labels.HOST: host.name, labels.MANAGED: "true"}


def plan(
    hosts: Sequence[Host],
    states: dict[str, HostState],
    nodes: dict[str, NodeState],
    images: Sequence[str] = (),
) -> list[Action]:
    """The actions that bring ``hosts`` to a provisioned swarm, given each host's state and
    the swarm's node list (``nodes`` by node id, empty when there is no swarm yet)."""
    managers = [h for h in hosts if h.role == "manager"]
    if not managers:
        raise PlanError("no host has role manager: a swarm needs one")
    active = [h for h in hosts if states[h.name].swarm == "active"]
    ours = _the_swarm(hosts, states, nodes)
    foreign = [h.name for h in active if states[h.name].node_id not in nodes]
    if ours is not None and foreign:
        raise PlanError(
            f"{', '.join(foreign)} belong(s) to another swarm than {ours.name}'s: "
            f"run `orchestrate hosts leave` or `docker swarm leave --force` on them first"
        )
    broken = [f"{h.name} ({states[h.name].swarm})" for h in hosts
              if states[h.name].swarm in ("pending", "error", "locked")]  # fmt: skip
    if broken:
        raise PlanError(
            f"swarm state needs a person: {', '.join(broken)}; see `docker info` on them"
        )
    actions: list[Action] = []
    leader = ours or managers[0]
    if ours is None:
        actions.append(Action("init", leader.name, f"advertise {leader.address}"))
    for host in hosts:
        state = states[host.name]
        node = nodes.get(state.node_id) if state.swarm == "active" else None
        if host is not leader and node is None:
            actions.append(Action("join", host.name, f"as {host.role} via {leader.name}"))
        elif node is not None and node.role != host.role:
            verb = "promote to manager" if host.role == "manager" else "demote to worker"
            actions.append(Action("role", host.name, verb))
        want = node_labels(host)
        have = node.labels if node is not None else {}
        if any(have.get(k) != v for k, v in want.items()):
            missing = sorted(k for k, v in want.items() if have.get(k) != v)
            actions.append(
                Action("label", host.name, ", ".join(missing), labels=tuple(sorted(want.items())))
            )
        lacking = tuple(i for i in images if i not in state.images)
        if lacking:
            actions.append(Action("ship", host.name, f"{len(lacking)} image(s)", images=lacking))
    return actions


def _the_swarm(
    hosts: Sequence[Host], states: dict[str, HostState], nodes: dict[str, NodeState]
) -> Host | None:
    """The manager host already running the swarm the hosts form, if any. ``nodes`` was
    read from it; managers of two different swarms among the hosts is an error."""
    running = [h for h in hosts if states[h.name].is_manager and states[h.name].swarm == "active"]
    clusters = {states[h.name].cluster_id for h in running}
    if len(clusters) > 1:
        names = ", ".join(f"{h.name} ({states[h.name].cluster_id[:12]})" for h in running)
        raise PlanError(f"the hosts manage different swarms: {names}; leave all but one")
    return running[0] if running else None
