"""Cross-section checks: what no single field can tell (names, overlaps, reachability, capacity).

The checks run on whatever parts of a document are individually valid, so that they can
be reported together with field-level errors without cascading from them.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from typing import Any

from distproc.concurrency import DEFAULT_THREADS, run_mode, tasks_at_once
from distproc.kinds import default_size

from .chaos import chaos_problems, chaos_warnings
from .errors import Path
from .host_checks import Machines, machine_problems, machine_warnings, machines, raw_machines
from .issues import Issue, duplicates, valid
from .topology import MAX_NAME_LEN, Cluster, ClusterName, DnsLabel, Network


@dataclass
class _Node:
    """What the checks need of a node; ``None`` where that part is invalid."""

    name: str | None
    count: int
    networks: list[str] | None


@dataclass
class _Parts:
    """The individually valid parts of a document, keyed by their index in it."""

    name: str | None = None
    network_names: list[tuple[int, str]] = field(default_factory=list)
    networks: list[tuple[int, Network]] = field(default_factory=list)
    master: _Node | None = None
    groups: list[tuple[int, _Node]] = field(default_factory=list)
    machines: Machines = field(default_factory=Machines)


def topology_problems(cluster: Cluster) -> list[Issue]:
    """Cross-section problems of a validated cluster (empty if it is consistent)."""
    return chaos_problems(cluster) + _check(
        _Parts(
            name=cluster.name,
            network_names=[(i, n.name) for i, n in enumerate(cluster.networks)],
            networks=list(enumerate(cluster.networks)),
            master=_Node("master", 1, cluster.master.networks),
            groups=[(i, _Node(g.name, g.count, g.networks)) for i, g in enumerate(cluster.workers)],
            machines=machines(cluster),
        )
    )


def raw_topology_problems(data: dict[Any, Any]) -> list[Issue]:
    """Cross-section problems of a raw document that failed validation, from its valid parts."""
    parts = _Parts(name=valid(ClusterName, data.get("name")))
    for i, item in _items(data, "networks"):
        if isinstance(item.get("name"), str):
            parts.network_names.append((i, item["name"]))
        if (net := valid(Network, item)) is not None:
            parts.networks.append((i, net))
    if isinstance(master := data.get("master"), dict):
        parts.master = _node(master, "master")
    parts.groups = [(i, _node(item)) for i, item in _items(data, "workers")]
    parts.machines = raw_machines(data)
    return _check(parts)


def _items(data: dict[Any, Any], key: str) -> list[tuple[int, dict[Any, Any]]]:
    items = data.get(key)
    items = items if isinstance(items, list) else []
    return [(i, item) for i, item in enumerate(items) if isinstance(item, dict)]


def _node(raw: dict[Any, Any], master: str | None = None) -> _Node:
    """A node view of raw master (``master`` given as its label) or worker-group data."""
    name, count, nets = raw.get("name"), raw.get("count", 1), raw.get("networks")
    if master is not None:
        name, count = master, 1
    return _Node(
        name if isinstance(name, str) else None,
        count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else 0,
        nets if isinstance(nets, list) and all(isinstance(n, str) for n in nets) else None,
    )


def _check(p: _Parts) -> list[Issue]:
    issues: list[Issue] = []
    issues += duplicates("networks", "network", p.network_names)
    group_names = [(i, g.name) for i, g in p.groups if g.name is not None]
    issues += duplicates("workers", "worker group", group_names)
    issues += _overlaps(p.networks)
    if p.network_names:  # else the networks section is itself broken: don't cascade
        issues += _references(p, {name for _, name in p.network_names})
    issues += _capacity(p)
    issues += _name_lengths(p)
    issues += machine_problems(p.machines, p.networks)
    return issues


def _overlaps(networks: list[tuple[int, Network]]) -> list[Issue]:
    issues = []
    for k, (j, b) in enumerate(networks):
        for i, a in networks[:k]:
            if a.network.overlaps(b.network):
                msg = f"subnet {b.subnet} overlaps {a.subnet} of network {a.name!r} (networks[{i}])"
                issues.append(Issue(("networks", j, "subnet"), msg))
                break
    return issues


def _list_refs(path: Path, refs: list[str], declared: set[str]) -> tuple[list[Issue], bool]:
    """Problems with one node's network list, and whether all its names are declared."""
    issues, seen, ok = [], set(), True
    for k, name in enumerate(refs):
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            issues.append(
                Issue((*path, k), f"network {name!r} is not declared (declared: {known})")
            )
            ok = False
        elif name in seen:
            issues.append(Issue((*path, k), f"network {name!r} is listed twice"))
        seen.add(name)
    return issues, ok


def _references(p: _Parts, declared: set[str]) -> list[Issue]:
    issues: list[Issue] = []
    if p.master is not None and p.master.networks is not None:
        issues += _list_refs(("master", "networks"), p.master.networks, declared)[0]
    for i, group in p.groups:
        if group.networks is not None:
            issues += _list_refs(("workers", i, "networks"), group.networks, declared)[0]
    return issues


TEST_RANGE = ipaddress.IPv4Network("198.18.0.0/15")


def topology_warnings(cluster: Cluster) -> list[Issue]:
    """Doubts that are not errors: the cluster runs, but maybe not as meant.

    - a worker group that shares no network with the master: such a topology is valid, and
      running it is how the end-to-end checks are shown to fail (``up`` exits 3 when those
      workers never connect);
    - a subnet outside 198.18.0.0/15, the range reserved for network tests, which is sure
      not to clash with a real network;
    - no workers at all: ``up`` then runs no job;
    - a job that will take long (``job_time_warnings``);
    - doubts about the machines (``machine_warnings``).
    """
    master_nets = set(cluster.master.networks)
    issues = []
    for i, net in enumerate(cluster.networks):
        if not net.network.subnet_of(TEST_RANGE):
            msg = (
                f"subnet {net.subnet} is outside 198.18.0.0/15 (reserved for network "
                "tests): it may clash with a real network"
            )
            issues.append(Issue(("networks", i, "subnet"), msg))
    off = cluster.groups_off_master_networks()
    for i, group in enumerate(cluster.workers):
        if group in off:
            msg = (
                f"worker group {group.name!r} shares no network with the master "
                f"(master is on {', '.join(sorted(master_nets))}): its workers cannot connect"
            )
            issues.append(Issue(("workers", i, "networks"), msg))
    if not cluster.total_workers:
        issues.append(Issue(("workers",), "no workers: `up` runs no job"))
    issues += job_time_warnings(cluster)
    issues += machine_warnings(cluster)
    issues += chaos_warnings(cluster)
    return issues


#: Warn about a job expected to take longer than this (``up`` runs it and waits for it).
LONG_JOB_SECONDS = 60.0


def concurrent_slots(cluster: Cluster, kind: str) -> int:
    """Tasks of ``kind`` the workers that can reach the master run at once, by the workers'
    own rule (``distproc.concurrency``): each group's replicas times its pool size. A group
    of processes is taken to use ``ceil(cpus)`` of them, as its CPU quota gives it (at most:
    a worker also caps them at the host's CPUs)."""
    master_nets = set(cluster.master.networks)
    slots = 0
    for group in cluster.workers:
        if not master_nets & set(group.networks):
            continue  # its workers never connect (warned above)
        concurrency = None if group.concurrency == "auto" else group.concurrency
        mode = run_mode(kind, group.mode)
        cpus = max(1, math.ceil(group.resources.cpus))
        slots += group.count * tasks_at_once(mode, concurrency, DEFAULT_THREADS, cpus)
    return slots


def job_seconds(tasks: int, ms: int, slots: int) -> float:
    """How long ``tasks`` tasks of ``ms`` each take on ``slots`` running at once: the tasks go
    out in waves of ``slots``, and the last wave, even a partial one, takes a whole ``ms``."""
    return math.ceil(tasks / slots) * ms / 1000


def about(seconds: float) -> str:
    """``"about 80 s"``: two significant figures, plainly (1000 s, not 1e+03)."""
    rounded = round(seconds, 2 - len(str(int(seconds)))) if seconds >= 100 else round(seconds)
    return f"about {int(rounded)} s"


def job_time_warnings(cluster: Cluster) -> list[Issue]:
    """A job whose expected time is long: only for ``io``, whose size is a time (ms per task).
    ``cpu`` is not estimated: its cost per task depends on the host's cores and their load
    (cpu(10000) took 5-13 ms on one core here), so a number would be a guess."""
    job = cluster.job
    size = default_size(job.kind) if job.size is None else job.size
    if job.kind != "io" or not job.tasks or not size:
        return []
    slots = concurrent_slots(cluster, job.kind)
    if not slots:
        return []  # no worker can run it: warned above
    seconds = job_seconds(job.tasks, size, slots)
    if seconds <= LONG_JOB_SECONDS:
        return []
    msg = (
        f"{job.tasks} io tasks of {size} ms on {slots} concurrent "
        f"slot{'s' * (slots != 1)} take {about(seconds)}; set job.size (ms per io task) "
        "or more concurrency"
    )
    return [Issue(("job", "size") if job.size is not None else ("job", "tasks"), msg)]


def _capacity(p: _Parts) -> list[Issue]:
    nodes = [("master", p.master)] if p.master else []
    nodes += [(f"{g.name or f'workers[{i}]'} {g.count}", g) for i, g in p.groups]
    issues = []
    for i, net in p.networks:
        users = [
            (label, n.count) for label, n in nodes if n.count and net.name in (n.networks or ())
        ]
        attached = sum(count for _, count in users)
        if attached > net.capacity:
            msg = (
                f"subnet {net.subnet} has room for {net.capacity} "
                f"container{'s' * (net.capacity != 1)} "
                f"({net.network.num_addresses} addresses minus network, broadcast and gateway) "
                f"but {attached} are attached ({', '.join(label for label, _ in users)})"
            )
            issues.append(Issue(("networks", i, "subnet"), msg))
    return issues


def _name_lengths(p: _Parts) -> list[Issue]:
    issues = []
    if p.name is None:
        return issues
    for i, group in p.groups:
        if group.count and group.name is not None and valid(DnsLabel, group.name):
            longest = f"{p.name}-{group.name}-{group.count - 1}"
            if len(longest) > MAX_NAME_LEN:
                msg = (
                    f"container name {longest!r} would be {len(longest)} characters "
                    f"(max {MAX_NAME_LEN}): shorten the cluster or group name"
                )
                issues.append(Issue(("workers", i, "name"), msg))
    return issues
