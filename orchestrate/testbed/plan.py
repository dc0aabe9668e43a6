"""The test bed's names, addresses and subnets, and what ``up`` must change: no Docker here.

The subnet plan. Its ranges are the model's (``orchestrate.model.hosts``: the test bed's
reservation, 198.18.64.0/21, which no cluster network may overlap, and swarm's address pool),
laid out here; all of it sits in the first /20 of the 198.18.64.0/18 the project set aside for
the test bed (198.18.80-127 would overlap the e2e topologies' 198.18.101-132):

===================  =====================================================================
198.18.64.0/24       ``LAN``: the machines' network on the outer engine; the host is .1,
                     machine tb-k is .(10+k). Fixed, so that hosts.yaml is stable.
198.18.65.0/24       ``INNER_BIP``: each inner engine's docker0 (the same on every machine:
                     each is its own network namespace).
198.18.66.0/23       ``INNER_POOL``: each inner engine's bridge networks (/24 each), among
                     them swarm's docker_gwbridge.
198.18.68.0/22       ``SWARM_POOL``: ``docker swarm init --default-addr-pool`` (provisioning:
                     the ingress, and overlays given no subnet).
198.18.72.0/21       ``OVERLAYS``: the cluster's overlays (examples/swarm.yaml gives them
                     explicit subnets there).
===================  =====================================================================

Everything stays inside 198.18.0.0/15, the only range this project may send traffic to.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from ..model import OrchestrateError
from ..model.hosts import (
    SWARM_ADDRESS_POOL,
    SWARM_POOL_SUBNET_SIZE,
    TESTBED_ENGINE_POOLS,
    TESTBED_LAN,
    TESTBED_RESERVED,
)

#: The model's reservation, and with the overlays above it, all the plan uses.
RESERVED = TESTBED_RESERVED
BLOCK = IPv4Network((RESERVED.network_address, RESERVED.prefixlen - 1))

LAN = TESTBED_LAN
LAN_GATEWAY = LAN.network_address + 1
#: tb-1 is LAN .11, tb-2 .12...: the first addresses stay free for the host and later needs.
FIRST_HOST_OFFSET = 10
#: The engine pools' first /24 is docker0; the next two, as one /23, its bridge networks.
INNER_BIP = f"{TESTBED_ENGINE_POOLS[0].network_address + 1}/{TESTBED_ENGINE_POOLS[0].prefixlen}"
INNER_POOL = IPv4Network((TESTBED_ENGINE_POOLS[1].network_address, 23))
INNER_POOL_SIZE = 24
SWARM_POOL = SWARM_ADDRESS_POOL
SWARM_POOL_SIZE = SWARM_POOL_SUBNET_SIZE
OVERLAYS = IPv4Network((RESERVED.broadcast_address + 1, RESERVED.prefixlen))

#: The Docker names of the LAN network and of the machines (tb-1...), and their volumes.
NETWORK_NAME = "distproc-testbed"
MACHINE_PREFIX = "tb-"
VOLUME_SUFFIX = "-docker"

DEFAULT_HOSTS = 3
#: An idle machine costs about 35 MiB (measured: docker stats) and a share of the 2 cores;
#: past this many, machines only wait for each other (the LAN /24 would hold 244).
MAX_HOSTS = 16

#: How long each machine's inner engine, then its sshd, may take to answer after its start
#: (measured: about 0.6 s for the engine).
READY_TIMEOUT = 60.0

ROLE_MANAGER = "manager"
ROLE_WORKER = "worker"
SSH_USER = "root"


class TestbedError(OrchestrateError):
    """The test bed could not be made, reached or removed."""


@dataclass(frozen=True)
class Machine:
    """One test machine: its name (container name and hostname), LAN address and role."""

    index: int
    name: str
    address: IPv4Address
    role: str

    @property
    def volume(self) -> str:
        """The volume holding its /var/lib/docker."""
        return f"{self.name}{VOLUME_SUFFIX}"


def check_count(n: int) -> int:
    """``n`` if it is a number of machines the test bed can have, else a TestbedError."""
    if not 1 <= n <= MAX_HOSTS:
        raise TestbedError(f"--hosts {n}: the test bed has 1 to {MAX_HOSTS} machines")
    return n


def machine(index: int) -> Machine:
    """Machine ``index`` (1-based): tb-1 at 198.18.64.11 is the manager, the rest workers."""
    address = LAN.network_address + FIRST_HOST_OFFSET + index
    if address not in LAN or address == LAN.broadcast_address:
        raise TestbedError(f"machine {index} has no address in {LAN}")
    role = ROLE_MANAGER if index == 1 else ROLE_WORKER
    return Machine(index, f"{MACHINE_PREFIX}{index}", address, role)


def machines(n: int) -> list[Machine]:
    """The test bed of ``n`` machines: tb-1..tb-n."""
    return [machine(i) for i in range(1, check_count(n) + 1)]


def index_of(name: str) -> int | None:
    """tb-3 -> 3; None for a name that is not a machine's."""
    digits = name.removeprefix(MACHINE_PREFIX)
    if name == digits or not digits.isdigit():
        return None
    return int(digits)


def daemon_config() -> dict[str, object]:
    """An inner engine's /etc/docker/daemon.json: its bridge and pools from the plan."""
    return {
        "bip": INNER_BIP,
        "default-address-pools": [{"base": str(INNER_POOL), "size": INNER_POOL_SIZE}],
        "storage-driver": "overlay2",
        "hosts": ["unix:///var/run/docker.sock"],
        "log-level": "warn",
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "2"},
    }


def daemon_json() -> bytes:
    return (json.dumps(daemon_config(), indent=2, sort_keys=True) + "\n").encode()


def subnets() -> dict[str, IPv4Network]:
    """Every subnet of the plan, by name: for the docs, the tests and ``status``."""
    return {
        "lan": LAN,
        "inner_bip": ipaddress.ip_interface(INNER_BIP).network,
        "inner_pool": INNER_POOL,
        "swarm_pool": SWARM_POOL,
        "overlays": OVERLAYS,
    }


# -- what `up` changes --------------------------------------------------------------------


@dataclass(frozen=True)
class Existing:
    """A machine container found on the engine: its inputs label and its state."""

    inputs: str
    running: bool


@dataclass
class Actions:
    """What ``up`` does to reach the wanted machines; empty when the test bed is as wanted."""

    create: list[str] = field(default_factory=list)
    recreate: list[str] = field(default_factory=list)  # made of other inputs: replaced
    start: list[str] = field(default_factory=list)  # stopped or killed: started again
    remove: list[str] = field(default_factory=list)  # beyond --hosts N
    keep: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.recreate or self.start or self.remove)


def reconcile(wanted: Mapping[str, str], existing: Mapping[str, Existing]) -> Actions:
    """``wanted``: machine name -> inputs hash; ``existing``: what the engine has.

    A machine made of other inputs (another image, host key, client key, address or inner
    engine config) is recreated; its volume, and so the images loaded into it, stays. A
    machine beyond the wanted count is removed with its volume (``--hosts`` shrinks the test
    bed from its highest-numbered machine: tb-1, the manager, always stays).
    """
    actions = Actions()
    for name, inputs in wanted.items():
        have = existing.get(name)
        if have is None:
            actions.create.append(name)
        elif have.inputs != inputs:
            actions.recreate.append(name)
        elif not have.running:
            actions.start.append(name)
        else:
            actions.keep.append(name)
    actions.remove = sorted((n for n in existing if n not in wanted), key=_order)
    return actions


def _order(name: str) -> tuple[int, str]:
    index = index_of(name)
    return (index if index is not None else 1 << 30, name)


def inputs_hash(*parts: str | bytes) -> str:
    """A short digest of what a machine is made of (its ``io.distproc.inputs`` label)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]
