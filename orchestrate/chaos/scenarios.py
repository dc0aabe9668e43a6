"""How each scenario of ``orchestrate.model.chaos.SCENARIOS`` injects its fault and heals it.

One class per scenario, registered under its name with ``@implements``; a test checks that
the names here are exactly the model's. A scenario says which operations of the backend's
``Faults`` it uses (``uses``: a backend without them refuses it before anything runs) and
which kernel features (``needs``: probed once per run, refused where missing). It acts only
through ``Faults`` and the master's ``status``, so it runs on any backend that offers what
it uses. ``restart-master`` acts on ``Target.container``, the master's (its spec's target
is ``"master"``); the job's own command follows the job through the restart
(``orchestrate.follow``).

Killing and freezing aim at a worker that holds tasks: a fault on a worker that holds
nothing tests nothing, and a classic worker holds its one task only about half the time
(killed at random, one lost a task in 3 of 8 runs here). So the worker is frozen, the
master is asked what it holds, and if nothing, it is thawed and looked at again a moment
later (``HOLD_TRIES`` at most). Frozen, it cannot answer, so what the master says it holds
is what it holds when the fault strikes.
"""

from __future__ import annotations

import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from distproc.text import plural

from ..backends.base import ContainerInfo, EngineError, ExecResult, Inventory, NetworkInfo
from ..backends.faults import (
    ADD_WORKER,
    DISCONNECT,
    FREEZE,
    IPTABLES,
    KILL,
    NETEM,
    NETNS,
    RECONNECT,
    REMOVE_WORKER,
    RESTART,
    TBF,
    THAW,
    Faults,
)
from ..events import Events
from ..model import Cluster
from ..model.chaos import DEFAULT_RATE
from ..model.topology import ChaosEntry

HOLD_TRIES = 20
HOLD_SECONDS = 8.0  # and no longer than this: a look (freeze, status, thaw) takes ~0.4 s here
HOLD_GAP = 0.01  # seconds thawed between two looks, times the look's number
SCALE_GRACE = 10.0  # seconds a worker removed by `scale` has to drain before SIGKILL
COMMENT = "distproc-chaos"  # on every iptables rule a scenario adds (and deletes by)


class ScenarioFailed(EngineError):
    """A fault could not be injected or healed (the engine's words, or a helper's)."""


@dataclass
class Target:
    """What a fault hits: a container (a worker's, the master's) or a group of workers."""

    name: str
    container: ContainerInfo | None = None
    group: str = ""


@dataclass
class Context:
    """What a scenario acts with: the cluster, its faults, the inventory as the fault is
    injected, the master's commands, the entry's options and where to say what it does."""

    cluster: Cluster
    faults: Faults
    inventory: Inventory
    control: Callable[[list[str]], ExecResult]
    entry: ChaosEntry
    events: Events


@dataclass
class Injected:
    """A fault in place: ``what`` was done (said in the verdict), what healing needs, and
    when (monotonic) the fault took hold, if before ``inject`` returned (a worker frozen,
    then killed, stopped working when it was frozen)."""

    what: str
    state: dict[str, Any] = field(default_factory=dict)
    since: float | None = None
    #: workers it added (their reported names): the checks expect a share from each
    added: list[str] = field(default_factory=list)


class Scenario(ABC):
    """One scenario's injection and healing (see the module docstring)."""

    name: ClassVar[str]
    uses: ClassVar[frozenset[str]]

    def needs(self, entry: ChaosEntry) -> dict[str, str]:
        """The kernel features ``entry`` needs, each with what needs it (for the refusal)."""
        return {}

    @abstractmethod
    def inject(self, ctx: Context, target: Target) -> Injected: ...

    @abstractmethod
    def heal(self, ctx: Context, target: Target, injected: Injected) -> str: ...


IMPLEMENTATIONS: dict[str, Scenario] = {}


def implements(cls: type[Scenario]) -> type[Scenario]:
    """Register ``cls`` as the implementation of the scenario called ``cls.name``."""
    if cls.name in IMPLEMENTATIONS:
        raise ValueError(f"scenario {cls.name!r} is implemented twice")
    IMPLEMENTATIONS[cls.name] = cls()
    return cls


# -- what the master says a worker holds ---------------------------------------------------
def held_by(ctx: Context, c: ContainerInfo) -> int:
    """Tasks the master says worker ``c`` holds now: leases, or classic tasks taken and not
    answered. Every record of the name it reports counts (a worker restarted has several:
    for a few seconds its earlier self still looks live, and the master may count its
    classic tasks there; a record of a process gone holds nothing in a job it did not see),
    and so does a classic record of one of its addresses (the master counts a classic peer
    by IP when it cannot tell whose it is)."""
    res = ctx.control(["status", "--connect-timeout", "5"])
    if res.exit_code != 0:
        raise ScenarioFailed(f"the master did not answer status: {res.stderr.strip()[-300:]}")
    name, ips = c.identity or c.name, set(c.addresses.values())
    held = 0
    for w in json.loads(res.stdout)["workers"]:
        ident = w["identity"]
        if ident.get("name") == name or ident.get("peer") in ips:
            held += int(w.get("leased", 0))
    return held


@dataclass(frozen=True)
class Frozen:
    """A worker frozen by ``freeze_holding``: what it held, after how many looks, since when."""

    held: int
    looks: int
    since: float

    def __str__(self) -> str:
        said = f"holding {plural(self.held, 'task')}" if self.held else "holding no task"
        return said + (f" ({plural(self.looks, 'look')})" if self.looks > 1 else "")


def freeze_holding(ctx: Context, c: ContainerInfo) -> Frozen:
    """Freeze ``c`` at a moment it holds tasks (see the module docstring); after
    ``HOLD_TRIES`` looks or ``HOLD_SECONDS``, whatever it holds."""
    deadline = time.monotonic() + HOLD_SECONDS
    for look in range(1, HOLD_TRIES + 1):
        ctx.faults.freeze(c)
        since = time.monotonic()
        try:
            held = held_by(ctx, c)
        except BaseException:
            ctx.faults.thaw(c)
            raise
        if held or look == HOLD_TRIES or time.monotonic() > deadline:
            return Frozen(held, look, since)
        ctx.faults.thaw(c)
        time.sleep(HOLD_GAP * look)
    raise AssertionError("unreachable")


def _container(target: Target) -> ContainerInfo:
    assert target.container is not None, f"{target.name}: a scenario on a container"
    return target.container


# -- the scenarios ------------------------------------------------------------------------
@implements
class KillWorker(Scenario):
    name = "kill-worker"
    uses = frozenset({FREEZE, THAW, KILL, RESTART})

    def inject(self, ctx: Context, target: Target) -> Injected:
        c = _container(target)
        frozen = freeze_holding(ctx, c)
        try:
            ctx.faults.kill(c)  # frozen: it dies before it runs another instruction
        except BaseException:
            ctx.faults.thaw(c)
            raise
        return Injected(f"killed {c.name} (SIGKILL) {frozen}", {"held": frozen.held},
                        frozen.since)  # fmt: skip

    def heal(self, ctx: Context, target: Target, injected: Injected) -> str:
        c = _container(target)
        ctx.faults.restart(c)
        return f"started {c.name} again"


@implements
class PauseWorker(Scenario):
    name = "pause-worker"
    uses = frozenset({FREEZE, THAW})

    def inject(self, ctx: Context, target: Target) -> Injected:
        c = _container(target)
        frozen = freeze_holding(ctx, c)
        return Injected(f"froze {c.name} {frozen}", {"held": frozen.held}, frozen.since)

    def heal(self, ctx: Context, target: Target, injected: Injected) -> str:
        c = _container(target)
        ctx.faults.thaw(c)
        return f"thawed {c.name}"


def master_links(inv: Inventory, c: ContainerInfo) -> list[tuple[NetworkInfo, str]]:
    """(network, ``c``'s address on it) for every network ``c`` shares with the master."""
    master = set(inv.master.addresses) if inv.master else set()
    return [(n, c.addresses[n.name]) for n in inv.networks
            if n.name in c.addresses and n.name in master]  # fmt: skip


@implements
class Partition(Scenario):
    name = "partition"
    uses = frozenset({DISCONNECT, RECONNECT})

    def inject(self, ctx: Context, target: Target) -> Injected:
        c = _container(target)
        links = master_links(ctx.inventory, c)
        if not links:
            raise ScenarioFailed(f"{c.name} shares no network with the master: nothing to cut")
        done: list[tuple[NetworkInfo, str]] = []
        try:
            for net, address in links:
                ctx.faults.disconnect(c, net)
                done.append((net, address))
        except BaseException:
            for net, address in done:
                ctx.faults.reconnect(c, net, address)
            raise
        nets = ", ".join(f"{n.name} ({a})" for n, a in links)
        return Injected(f"disconnected {c.name} from {nets}", {"links": links})

    def heal(self, ctx: Context, target: Target, injected: Injected) -> str:
        c = _container(target)
        for net, address in injected.state["links"]:
            ctx.faults.reconnect(c, net, address)
        return f"reconnected {c.name} at the same addresses"


def _in_netns(ctx: Context, c: ContainerInfo, script: str, *args: str, what: str) -> str:
    """Run ``script`` (sh) in ``c``'s network namespace; its stdout, or ``ScenarioFailed``."""
    res = ctx.faults.in_netns(c, ["sh", "-c", script, "sh", *args], ctx.events)
    if res.exit_code != 0:
        said = " ".join((res.stderr or res.stdout).split())[-400:]
        raise ScenarioFailed(f"{what} in {c.name}'s namespace failed (exit {res.exit_code}): "
                             f"{said}")  # fmt: skip
    return res.stdout


_RESTORE = 'printf "%s" "$1" | iptables-restore -w --noflush'


def blackhole_rules(verb: str) -> str:
    """iptables-restore input that adds (``-I``) or deletes (``-D``) the two DROP rules in
    one transaction: nothing gets in or out between the first and the second."""
    where = " 1" if verb == "-I" else ""
    rules = "".join(f"{verb} {chain}{where} -m comment --comment {COMMENT} -j DROP\n"
                    for chain in ("INPUT", "OUTPUT"))  # fmt: skip
    return f"*filter\n{rules}COMMIT\n"


@implements
class Blackhole(Scenario):
    name = "blackhole"
    uses = frozenset({NETNS})

    def needs(self, entry: ChaosEntry) -> dict[str, str]:
        return {IPTABLES: "blackhole"}

    def inject(self, ctx: Context, target: Target) -> Injected:
        c = _container(target)
        _in_netns(ctx, c, _RESTORE, blackhole_rules("-I"), what="adding DROP rules")
        return Injected(f"dropped every packet in {c.name}'s namespace (iptables INPUT, OUTPUT)")

    def heal(self, ctx: Context, target: Target, injected: Injected) -> str:
        c = _container(target)
        _in_netns(ctx, c, _RESTORE, blackhole_rules("-D"), what="deleting the DROP rules")
        return f"let packets through {c.name}'s namespace again"


_UNITS = {"bit": 1, "kbit": 1_000, "mbit": 1_000_000, "gbit": 1_000_000_000}
MIN_BURST = 16 * 1024  # bytes: several MTUs, or tbf passes nothing
SHAPE_SCRIPT = r"""
set -e
rate=$1 burst=$2 netem=$3; shift 3
for ip in "$@"; do
  dev=$(ip -o -4 addr show | awk -v ip="$ip" \
    '{split($4, a, "/"); if (a[1] == ip) {sub(/@.*/, "", $2); print $2}}')
  [ -n "$dev" ] || { echo "no interface has $ip" >&2; exit 3; }
  tc qdisc add dev "$dev" root handle 1: tbf rate "$rate" burst "$burst" latency 400ms
  [ -z "$netem" ] || tc qdisc add dev "$dev" parent 1:1 handle 10: netem $netem
  echo "$dev"
done
"""
UNSHAPE_SCRIPT = 'for dev in "$@"; do tc qdisc del dev "$dev" root; done'


def burst_for(rate: str) -> int:
    """tbf's bucket for ``rate``: a hundredth of a second of it, and never under
    ``MIN_BURST`` (a bucket smaller than a packet passes nothing; tbf also needs at least a
    timer tick's worth of the rate to reach it)."""
    m = re.fullmatch(r"(\d+)(bit|kbit|mbit|gbit)", rate)
    if m is None:
        raise ValueError(f"not a tc rate: {rate!r}")
    bytes_per_second = int(m[1]) * _UNITS[m[2]] // 8
    return max(MIN_BURST, bytes_per_second // 100)


def netem_args(entry: ChaosEntry) -> str:
    """netem's arguments for the entry's delay and loss ('' when it has neither)."""
    parts = []
    if entry.delay:
        parts.append(f"delay {entry.delay:g}ms")
    if entry.loss:
        parts.append(f"loss {entry.loss:g}%")
    return " ".join(parts)


@implements
class SlowLink(Scenario):
    name = "slow-link"
    uses = frozenset({NETNS})

    def needs(self, entry: ChaosEntry) -> dict[str, str]:
        out = {TBF: "slow-link"}
        given = [name for name in ("delay", "loss") if getattr(entry, name)]
        if given:
            out[NETEM] = f"slow-link's {' and '.join(given)}"
        return out

    def inject(self, ctx: Context, target: Target) -> Injected:
        c = _container(target)
        links = master_links(ctx.inventory, c)
        if not links:
            raise ScenarioFailed(f"{c.name} shares no network with the master: no link to slow")
        rate = ctx.entry.rate or DEFAULT_RATE
        netem = netem_args(ctx.entry)
        out = _in_netns(ctx, c, SHAPE_SCRIPT, rate, str(burst_for(rate)), netem,
                        *[a for _, a in links], what="adding the tbf qdisc")  # fmt: skip
        devs = out.split()
        what = f"limited what {c.name} sends to {rate} (tbf on {', '.join(devs)})"
        return Injected(what + (f", with netem {netem}" if netem else ""), {"devs": devs})

    def heal(self, ctx: Context, target: Target, injected: Injected) -> str:
        c = _container(target)
        _in_netns(ctx, c, UNSHAPE_SCRIPT, *injected.state["devs"], what="deleting the qdisc")
        return f"lifted the rate limit on {c.name}"


@implements
class RestartMaster(Scenario):
    name = "restart-master"
    uses = frozenset({KILL, RESTART})

    def inject(self, ctx: Context, target: Target) -> Injected:
        c = _container(target)
        ctx.faults.kill(c)
        return Injected(f"killed the master {c.name} (SIGKILL)")

    def heal(self, ctx: Context, target: Target, injected: Injected) -> str:
        c = _container(target)
        ctx.faults.restart(c)
        return f"started the master {c.name} again"


@implements
class Scale(Scenario):
    name = "scale"
    uses = frozenset({ADD_WORKER, REMOVE_WORKER})

    def inject(self, ctx: Context, target: Target) -> Injected:
        added = ctx.faults.add_worker(ctx.cluster, target.group)
        return Injected(f"added {added.name} to group {target.group}", {"added": added},
                        added=[added.identity or added.name])  # fmt: skip

    def heal(self, ctx: Context, target: Target, injected: Injected) -> str:
        added: ContainerInfo = injected.state["added"]
        ctx.faults.remove_worker(added, SCALE_GRACE)
        return f"removed {added.name} (SIGTERM: it drained)"
