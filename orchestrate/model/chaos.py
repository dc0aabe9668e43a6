"""The chaos scenarios, declared once: their names, what each does, what it targets, its
options and defaults. The ``chaos:`` list of cluster.yaml (``topology.ChaosEntry``) and
``orchestrate chaos`` read them from here; ``orchestrate.chaos.scenarios`` implements each
name (a test checks that every name has one implementation, and no other exists). No Docker.

To add a scenario: a ``ScenarioSpec`` here, an implementation
registered under the same name in ``orchestrate.chaos.scenarios``, then
``orchestrate schema --write`` (the name is in the schema's enum).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .issues import Issue

if TYPE_CHECKING:
    from .topology import ChaosEntry, Cluster

Target = Literal["worker", "group", "master"]

#: seconds after the job started (its first progress line) when a fault is injected
DEFAULT_AT = 2.0
#: a fault meant to outlast the lease lasts the job's lease_seconds plus this, by default
PAST_LEASE = 2.0
#: at most this many seconds for ``at`` and ``for``: a chaos run is one job, not a soak
MAX_SECONDS = 3600.0
#: tc's rate units (bits per second); a rate is an integer with one of them, as tc writes it
RATE_PATTERN = r"^[1-9][0-9]{0,8}(bit|kbit|mbit|gbit)$"
DEFAULT_RATE = "32kbit"


@dataclass(frozen=True)
class ScenarioSpec:
    """One scenario: ``target`` is what ``--target`` names (a worker, a group of workers, or
    the master); ``options`` are the entry fields only it takes; the fault lasts ``for``
    seconds, by default past the job's lease (``past_lease``) or ``default_for``."""

    name: str
    summary: str
    target: Target = "worker"
    options: tuple[str, ...] = ()
    past_lease: bool = False
    default_for: float = 3.0

    def duration(self, given: float | None, lease_seconds: float) -> float:
        """How long the fault lasts: ``given``, else this scenario's default."""
        if given is not None:
            return given
        return lease_seconds + PAST_LEASE if self.past_lease else self.default_for


SCENARIOS: dict[str, ScenarioSpec] = {
    s.name: s
    for s in (
        ScenarioSpec(
            "kill-worker",
            "SIGKILL a worker while it holds tasks; start it again after `for` seconds",
        ),
        ScenarioSpec(
            "pause-worker",
            "freeze a worker holding tasks past the lease, then thaw it: its late results "
            "are taken if their tasks have not run again, else duplicates; never counted twice",
            past_lease=True,
        ),
        ScenarioSpec(
            "partition",
            "disconnect a worker from every network it shares with the master, then "
            "reconnect it at the same addresses",
            past_lease=True,
        ),
        ScenarioSpec(
            "blackhole",
            "drop every packet in a worker's network namespace (iptables): its TCP connection "
            "stays open and nothing arrives",
            past_lease=True,
        ),
        ScenarioSpec(
            "slow-link",
            "rate-limit what a worker sends (tc tbf on its interface); delay and loss need "
            "netem, refused where the kernel lacks it",
            options=("rate", "delay", "loss"),
            default_for=5.0,
        ),
        ScenarioSpec(
            "restart-master",
            "SIGKILL the master mid-job, start it again after `for` seconds: it replays its "
            "journal and the job goes on under its id (master.journal: false loses the job)",
            target="master",
            default_for=2.0,
        ),
        ScenarioSpec(
            "scale",
            "add a worker to a group mid-job, then remove it after `for` seconds (SIGTERM: "
            "it finishes or hands back what it holds)",
            target="group",
            default_for=4.0,
        ),
    )
}
SCENARIO_NAMES = tuple(SCENARIOS)


def chaos_problems(cluster: Cluster) -> list[Issue]:
    """What no single field of a ``chaos:`` entry can tell: a target the file has no such
    worker or group for, and a job that the entry's overrides break (classic needs square)."""
    issues: list[Issue] = []
    for i, entry in enumerate(cluster.chaos):
        spec = SCENARIOS[entry.scenario]
        if entry.target is not None:
            why = target_problem(cluster, spec, entry.target)
            if why:
                issues.append(Issue(("chaos", i, "target"), why))
        if entry.job is not None:
            given = entry.job.given()
            merged = {**cluster.job.spec(), **given}
            if merged["protocol"] == "classic" and merged["kind"] != "square":
                field = "kind" if "kind" in given else "protocol"
                issues.append(
                    Issue(
                        ("chaos", i, "job", field),
                        "the classic protocol only supports kind 'square', not "
                        f"{merged['kind']!r}" + ("" if "kind" in given else " (the file's job)"),
                    )
                )
    return issues


def chaos_warnings(cluster: Cluster) -> list[Issue]:
    """A fault meant to outlast the lease that does not: nothing expires, so the scenario
    shows less than it says."""
    issues = []
    for i, entry in enumerate(cluster.chaos):
        spec = SCENARIOS[entry.scenario]
        lease = job_of(cluster, entry)["lease_seconds"]
        if spec.past_lease and entry.for_ is not None and entry.for_ <= lease:
            issues.append(
                Issue(
                    ("chaos", i, "for"),
                    f"{entry.scenario} for {entry.for_:g} s is not past the job's lease "
                    f"({lease:g} s): no lease expires",
                )
            )
    return issues


def job_of(cluster: Cluster, entry: ChaosEntry) -> dict[str, object]:
    """The job an entry runs: the file's, with the entry's own fields over it."""
    return {**cluster.job.spec(), **(entry.job.given() if entry.job else {})}


_INDEXED = re.compile(r"^(?P<group>[a-z0-9-]+)-(?P<index>[0-9]+)$")


def target_problem(cluster: Cluster, spec: ScenarioSpec, target: str) -> str:
    """Why ``target`` names nothing ``spec`` can act on in ``cluster`` ('' if it does).

    A worker is named as its container is (``alpha-0``), with or without the cluster's name
    in front; its index is checked where the file's backend names workers as the model does
    (local); on swarm, slots count from 1 and the backend checks the index at run time."""
    if spec.target == "master":
        return (
            ""
            if target in ("master", cluster.master_name)
            else (f"{spec.name} acts on the master: leave target out, or write 'master'")
        )
    groups = {g.name: g for g in cluster.workers}
    if spec.target == "group":
        if target in groups:
            return ""
        return f"no worker group {target!r} (groups: {', '.join(groups) or 'none'})"
    short = target.removeprefix(f"{cluster.name}-")
    m = _INDEXED.match(short)
    named = ", ".join(n.removeprefix(f"{cluster.name}-") for n in cluster.worker_names())
    if m is None or m["group"] not in groups:
        return f"{target!r} is not a worker of this file (workers: {named or 'none'})"
    if cluster.backend == "local" and f"{cluster.name}-{short}" not in cluster.worker_names():
        return f"no worker {target!r} (workers: {named})"
    return ""
