"""Cross-section checks of the machines: backend, hosts, placement, encrypted networks and the
test bed's reserved addresses. Like ``checks``, they run on the valid parts of a document."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import Path
from .hosts import TESTBED_ENGINE_POOLS, TESTBED_LAN, TESTBED_RESERVED, Backend, Placement, carries
from .issues import Issue, duplicates, valid
from .topology import Cluster, Network


@dataclass
class HostView:
    """What the checks need of a host; ``None`` where that part is invalid."""

    name: str | None
    address: str | None
    role: str | None
    labels: dict[str, str] | None

    @classmethod
    def raw(cls, item: Any) -> HostView:
        if not isinstance(item, dict):
            return cls(None, None, None, None)
        name, address = item.get("name"), item.get("address")
        role, labels = item.get("role", "worker"), item.get("labels", {})
        strings = isinstance(labels, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        )
        return cls(
            name if isinstance(name, str) else None,
            address if isinstance(address, str) else None,
            role if role in ("manager", "worker") else None,
            labels if strings else None,
        )


@dataclass
class Machines:
    """The machine-related parts of a document. ``hosts`` is None where the section cannot
    be read (its problems are reported already): then nothing is said about hosts."""

    backend: str | None = "local"
    hosts_given: bool = False
    hosts: list[HostView] | None = field(default_factory=list)
    placements: list[tuple[Path, Placement]] = field(default_factory=list)
    encrypted: list[int] = field(default_factory=list)


def machines(cluster: Cluster) -> Machines:
    """The machine parts of a validated cluster."""
    places = [(("master", "placement"), cluster.master.placement)]
    places += [(("workers", i, "placement"), g.placement) for i, g in enumerate(cluster.workers)]
    return Machines(
        backend=cluster.backend,
        hosts_given=bool(cluster.hosts),
        hosts=[HostView(h.name, h.address, h.role, dict(h.labels)) for h in cluster.hosts],
        placements=[(path, p) for path, p in places if p is not None],
        encrypted=[i for i, n in enumerate(cluster.networks) if n.encrypted],
    )


def raw_machines(data: dict[Any, Any]) -> Machines:
    """The valid machine parts of a raw document that failed validation."""
    parts = Machines(backend=valid(Backend, data.get("backend", "local")))
    if "hosts" in data:
        hosts = data["hosts"]
        parts.hosts = [HostView.raw(h) for h in hosts] if isinstance(hosts, list) else None
        parts.hosts_given = hosts != []
    nodes: list[tuple[Path, Any]] = [(("master",), data.get("master"))]
    nodes += [(("workers", i), w) for i, w in enumerate(_list(data.get("workers")))]
    for path, node in nodes:
        raw = node.get("placement") if isinstance(node, dict) else None
        if raw is not None and (placement := valid(Placement, raw)) is not None:
            parts.placements.append(((*path, "placement"), placement))
    for i, net in enumerate(_list(data.get("networks"))):
        if isinstance(net, dict) and net.get("encrypted") is True:
            parts.encrypted.append(i)
    return parts


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def machine_problems(m: Machines, networks: list[tuple[int, Network]]) -> list[Issue]:
    """Every problem of the machine parts ``m`` (and of ``networks`` against the test bed)."""
    issues = []
    if m.hosts:
        names = [(i, h.name) for i, h in enumerate(m.hosts) if h.name]
        issues += duplicates("hosts", "host", names) + _duplicate_addresses(m.hosts)
    if m.backend == "local":
        issues += _only_for_swarm(m)
    elif m.backend == "swarm":
        issues += _reserved(networks)
        issues += _swarm_needs_a_manager(m)
        if m.hosts is not None:
            for path, placement in m.placements:
                issues += _placement(path, placement, m.hosts)
    return issues


def _reserved(networks: list[tuple[int, Network]]) -> list[Issue]:
    """Subnets in the test bed's range: on a swarm its nodes' addresses and pools (an error);
    on the local engine they clash only with a test bed's LAN running there (a warning: then
    Docker refuses the network)."""
    pools = f"{TESTBED_ENGINE_POOLS[0].network_address}-{TESTBED_ENGINE_POOLS[-1][-1]}"
    return [
        Issue(
            ("networks", i, "subnet"),
            f"subnet {net.subnet} overlaps {TESTBED_RESERVED}, reserved for the test bed "
            f"(its LAN {TESTBED_LAN}, its engines' and swarm's address pools {pools})",
        )
        for i, net in networks
        if net.network.overlaps(TESTBED_RESERVED)
    ]


def _duplicate_addresses(hosts: list[HostView]) -> list[Issue]:
    first: dict[str, int] = {}
    issues = []
    for i, host in enumerate(hosts):
        if host.address is None:
            continue
        key = _address_key(host.address)
        if key in first:
            j = first[key]
            msg = (
                f"address {host.address} is also that of hosts[{j}] ({hosts[j].name!r}): a host "
                "is one machine, and the nodes reach each other at these addresses"
            )
            issues.append(Issue(("hosts", i, "address"), msg))
        else:
            first[key] = i
    return issues


def _address_key(address: str) -> str:
    """An address as compared: DNS names case-insensitively, IPv4 in its normal form."""
    try:
        return str(ipaddress.IPv4Address(address))
    except ValueError:
        return address.casefold()


_LOCAL = "backend local (the default) runs every container on this machine's engine"


def _only_for_swarm(m: Machines) -> list[Issue]:
    """Machine fields with backend local (``hosts: []`` is no host): errors, not warnings,
    because the cluster would run on one machine while its file says it spans several, which
    is what a user would believe and what no check could then tell."""
    issues = []
    if m.hosts_given:
        msg = f"only backend swarm uses hosts; {_LOCAL}: set `backend: swarm` or remove hosts"
        issues.append(Issue(("hosts",), msg))
    for path, _ in m.placements:
        msg = f"only backend swarm uses placement; {_LOCAL}: set `backend: swarm` or remove it"
        issues.append(Issue(path, msg))
    for i in m.encrypted:
        msg = (
            "encrypted is an overlay option (backend swarm); backend local makes bridge "
            "networks, whose traffic never leaves this machine"
        )
        issues.append(Issue(("networks", i, "encrypted"), msg))
    return issues


def _swarm_needs_a_manager(m: Machines) -> list[Issue]:
    if not m.hosts_given:
        msg = "swarm needs hosts: a list with at least one manager, or {file: PATH}"
        return [Issue(("backend",), msg)]
    if m.hosts is None or any(h.role is None for h in m.hosts):
        return []  # unreadable or with an invalid role: reported already
    if not any(h.role == "manager" for h in m.hosts):
        msg = (
            "no host has role manager: a swarm needs one (the first manager inits the swarm, "
            "and runs the master unless master.placement says otherwise)"
        )
        return [Issue(("hosts",), msg)]
    return []


def _placement(path: Path, placement: Placement, hosts: list[HostView]) -> list[Issue]:
    """Names that are no host, labels that no host has, or a combination no host meets;
    each judged only where every host's names (or labels) are valid, not to cascade."""
    names_known = all(h.name for h in hosts)
    labels_known = all(h.labels is not None for h in hosts)
    names = list(dict.fromkeys(h.name for h in hosts if h.name))
    issues = []
    for k, name in enumerate(placement.hosts or [] if names_known else []):
        if name not in names:
            msg = f"no host is called {name!r} (hosts: {', '.join(names) or 'none'})"
            issues.append(Issue((*path, "hosts", k), msg))
        elif name in (placement.hosts or [])[:k]:
            issues.append(Issue((*path, "hosts", k), f"host {name!r} is listed twice"))
    for key, value in placement.labels.items() if labels_known else []:
        if not any(carries(h.labels or {}, {key: value}) for h in hosts):
            seen = sorted({h.labels[key] for h in hosts if h.labels and key in h.labels})
            has = f"{key} on hosts: {', '.join(seen)}" if seen else f"no host has a label {key}"
            issues.append(Issue((*path, "labels", key), f"no host has {key}={value} ({has})"))
    if (
        names_known
        and labels_known
        and not issues
        and not any(placement.allows(h.name or "", h.labels or {}) for h in hosts)
    ):
        pairs = [f"{k}={v}" for k, v in placement.labels.items()]
        wanted = pairs[0] if len(pairs) == 1 else f"all of {', '.join(pairs)}"
        among = f"none of {', '.join(placement.hosts)}" if placement.hosts else "no host"
        issues.append(Issue(path, f"matches no host: {among} has {wanted}"))
    return issues


def machine_warnings(cluster: Cluster) -> list[Issue]:
    """Doubts about the machines of a valid cluster:

    - a key_file or known_hosts that does not exist: not an error, since validate reads no
      host and the file may be made later (``up`` and ``orchestrate hosts`` need it, and say
      so when they connect), but most likely a typo worth knowing now;
    - every worker placed only where the master runs: valid, but no result then crosses
      machines, which is what a swarm cluster is for;
    - with backend local, a subnet in the test bed's range (``_reserved``).
    """
    issues = []
    if cluster.backend == "local":
        issues += _reserved(list(enumerate(cluster.networks)))
    said: set[str] = set()  # hosts often share a key: one warning per file, at its first use
    for i, host in enumerate(cluster.hosts):
        for what, path in (("key_file", host.key_file), ("known_hosts", host.known_hosts)):
            if path is not None and path not in said and not os.path.exists(path):
                said.add(path)
                msg = f"{path} does not exist (yet): connecting to the hosts needs it"
                issues.append(Issue(("hosts", i, what), msg))
    master = cluster.master_hosts()
    groups = [g for g in cluster.workers if g.count]
    if len(master) == 1 and groups and all(cluster.group_hosts(g) == master for g in groups):
        msg = (
            f"every worker runs where the master does ({master[0].name}): "
            "no result crosses machines"
        )
        issues.append(Issue(("workers",), msg))
    return issues
