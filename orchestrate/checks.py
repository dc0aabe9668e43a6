"""End-to-end checks: evidence that every task crossed the network and came back.

Each check compares what the master observed (its report, read once with
``distproc.report.Report.from_dict``: results per TCP peer address, as the server saw them)
with what the engine says (each container's addresses and network namespace). The checks
read the report's fields, never its JSON keys, so a renamed key is an error at the boundary,
not a silent ``0`` here.

A check is ``distproc.report.Check``, the one shape shared with the queue program's own
checks; orchestrate keeps them as ``Check.as_dict()`` (``{"name", "status", "ok",
"evidence"}``), the form its JSON output has always had. A check with nothing to judge (no
workers, no tasks) is ``skipped`` with the reason: a pass on no evidence would claim what
nobody saw.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from distproc.report import SKIPPED, Check, Report, Status, WorkerShare
from distproc.text import ip_key, ip_sorted, plural

from .backends.base import ContainerInfo, ExecResult, Inventory

CheckDict = dict[str, Any]
OWN_CHECKS = ("every_id_accounted", "values_correct", "all_ok")


def check(name: str, status: Status, evidence: str) -> CheckDict:
    """A ``Check`` (which validates ``status``) in orchestrate's dict form."""
    return Check(name, status, evidence).as_dict()


def verdict(ok: bool) -> Status:
    """``pass`` or ``fail``: for a check that had evidence to judge."""
    return "pass" if ok else "fail"


def workers_connected(
    expected: list[str],
    connected: set[str],
    waited: float,
    unreachable: Mapping[str, str] | None = None,
) -> CheckDict:
    """Readiness at the application level: every worker authenticated with the master.
    ``unreachable`` maps the workers known never to connect to why (no shared network):
    they are named with that reason."""
    if not expected:
        return check("workers_connected", "skipped", "no workers in the file to wait for")
    unreachable = unreachable or {}
    missing = [n for n in expected if n not in connected]
    if missing:
        by_reason: dict[str, list[str]] = defaultdict(list)
        for n in missing:
            by_reason[unreachable.get(n, "")].append(n)
        timed_out = by_reason.pop("", [])
        parts = [f"{', '.join(names)}: {reason}" for reason, names in by_reason.items()]
        parts += [", ".join(timed_out)] if timed_out else []
        return check(
            "workers_connected",
            "fail",
            f"{len(expected) - len(missing)}/{plural(len(expected), 'worker')} connected after "
            f"{waited:.1f}s; never connected: {'; '.join(parts)}",
        )
    return check(
        "workers_connected",
        "pass",
        f"{len(expected)}/{plural(len(expected), 'worker')} connected with the authkey in "
        f"{waited:.1f}s",
    )


def tasks_answered_once(report: Report) -> CheckDict:
    """Every task id was answered exactly once, with the right value (where it can be known).

    The master's own checks decide; a skipped one (a custom kind's values, which nobody can
    check) is named in the evidence, so a pass never claims values were checked.
    """
    t = report.totals
    own = {n: report.check(n) for n in OWN_CHECKS}
    failed = [n for n, c in own.items() if c is None or not c.ok]
    evidence = (
        f"{t.ok}/{t.tasks} ok, failed {t.failed}, lost {t.lost}, dead {t.dead}, "
        f"duplicates {t.duplicates} (counted once); {report.guarantee}"
    )
    if failed:
        evidence += "; " + "; ".join(
            f"{n}: {c.evidence if (c := own[n]) else 'missing'}" for n in failed
        )
    elif not t.tasks:
        return check("tasks_answered_once", "skipped", "the job had no tasks to answer")
    unjudged = [c.evidence for c in own.values() if c is not None and c.status == SKIPPED]
    if unjudged:
        evidence += "; " + "; ".join(unjudged)
    ok = not failed and t.ok == t.tasks
    return check("tasks_answered_once", verdict(ok), evidence)


def by_address(containers: list[ContainerInfo]) -> list[ContainerInfo]:
    """Containers in the numeric order of their lowest address (those joined by hand come in
    the engine's order, which is no order a reader can follow)."""
    return sorted(
        containers, key=lambda c: ip_key(min(c.addresses.values(), key=ip_key, default=""))
    )


def _by_address(report: Report) -> list[tuple[str, int]]:
    """(peer IP, results) in numeric order of the IP, whatever order the report kept."""
    return sorted(report.results_by_peer.items(), key=lambda item: ip_key(item[0]))


def results_per_container(report: Report, inv: Inventory) -> dict[str, int]:
    """Accepted results per container, attributed by the peer IP the master saw."""
    out: dict[str, int] = defaultdict(int)
    for ip, n in _by_address(report):
        owner = inv.owner_of(ip)
        out[owner.name if owner else f"? {ip}"] += n
    return dict(out)


def results_per_worker(report: Report, inv: Inventory) -> dict[str, int]:
    """Accepted results per worker name: the containers that were one worker (a swarm task
    rescheduled after its machine was lost, under the same slot name) counted together."""
    out: dict[str, int] = defaultdict(int)
    for ip, n in _by_address(report):
        owner = inv.owner_of(ip)
        out[(owner.identity or owner.name) if owner else f"? {ip}"] += n
    return dict(out)


#: Tasks per worker from which every worker must have had a share. With one task per worker,
#: a fast inline worker answers its first and leases another before a slower one wakes:
#: 4 tasks on the 4 default workers left one idle in 3 of 9 runs; 8 or more, in none of 7.
SHARE_EVERY_WORKER_FROM = 4


def every_worker_contributed(report: Report, inv: Inventory, expected: list[str]) -> CheckDict:
    """Every worker container of the file had a share of the results (when there were
    enough tasks to go round)."""
    tasks = report.totals.tasks
    per = results_per_worker(report, inv)
    if not expected:
        return check("every_worker_contributed", "skipped", "no cluster workers (none in the file)")
    if tasks < SHARE_EVERY_WORKER_FROM * len(expected):
        return check(
            "every_worker_contributed",
            "skipped",
            f"not required: {plural(tasks, 'task')} for {plural(len(expected), 'worker')} "
            f"(required from {SHARE_EVERY_WORKER_FROM} per worker)",
        )
    idle = [n for n in expected if not per.get(n)]
    shares = ", ".join(f"{n} {per.get(n, 0)}" for n in expected)
    extra = {n: v for n, v in per.items() if n not in expected}
    if extra:
        shares += "; joined by hand: " + ", ".join(f"{n} {v}" for n, v in extra.items())
    return check(
        "every_worker_contributed",
        verdict(not idle),
        shares + (f"; idle: {', '.join(idle)}" if idle else ""),
    )


def results_crossed_the_network(report: Report, inv: Inventory) -> CheckDict:
    """Each result's TCP peer is a worker container's IP on a cluster network: not loopback,
    not the master's, and owned by the container Docker says has it."""
    master_ips = set(inv.master.addresses.values()) if inv.master else set()
    by_peer = report.results_by_peer
    if not report.totals.tasks and not by_peer:
        return check("results_crossed_the_network", "skipped", "the job had no tasks")
    good, bad = [], []
    for ip, n in _by_address(report):
        owner = inv.owner_of(ip) if ip else None
        problem = ""
        if not ip:
            problem = "no peer address"
        elif ipaddress.ip_address(ip).is_loopback:
            problem = "loopback"
        elif ip in master_ips:
            problem = "the master's own address"
        elif owner is None:
            problem = "owned by no container on a cluster network"
        if problem:
            bad.append(f"{ip} ({problem}) {n}")
        else:
            assert owner is not None
            net = inv.network_of(ip)
            good.append((ip, owner, net, n))
    total = sum(by_peer.values())
    accepted = report.totals.ok
    crossed = sum(n for *_, n in good)
    evidence = f"{crossed}/{accepted} results arrived from worker addresses: " + ", ".join(
        f"{ip} ({o.name} on {net}) {n}" for ip, o, net, n in good
    )
    claims = _claims_mismatch(report)
    if claims:
        evidence += "; claimed local IP differs from the observed peer: " + ", ".join(claims)
    if bad:
        evidence += "; not from a worker: " + ", ".join(bad)
    ok = not bad and total == accepted and crossed == accepted and accepted > 0
    return check("results_crossed_the_network", verdict(ok), evidence)


def _claims_mismatch(report: Report) -> list[str]:
    """Workers whose own idea of their IP is not the peer the master saw (NAT, a proxy)."""
    out = []
    for w in report.workers:
        claimed = w.identity.get("local_ip")
        if claimed and w.peers and claimed not in w.peers:
            out.append(f"{w.id} claims {claimed}, seen as {', '.join(ip_sorted(w.peers))}")
    return out


def _node_of(worker: WorkerShare, inv: Inventory) -> str:
    """The machine a reporting worker ran on: the container the backend gave its name, or
    else the one holding an address its results came from ("" when unknown)."""
    name = worker.identity.get("name")
    for c in [*inv.workers, *inv.others]:
        if name and c.identity == name:
            return c.node
    for ip in worker.peers:
        if (owner := inv.owner_of(ip)) is not None:
            return owner.node
    return ""


def separate_network_namespaces(report: Report, inv: Inventory) -> CheckDict:
    """Each worker runs in a network namespace of its own, not the master's.

    Namespace ids (``net:[inode]``, the engine's sandbox) are unique on one kernel only: two
    machines can hand out the same one. So a namespace is ``(node, id)``, and two processes
    share one only when both parts are equal."""
    master_node = inv.master.node if inv.master else ""
    master_ns = report.master.get("netns", "")
    same = []
    claimed = []
    for w in report.workers:
        ns = w.identity.get("netns")
        if ns:
            key = (_node_of(w, inv), ns)
            claimed.append(key)
            if key == (master_node, master_ns):
                same.append(w.id)
    sandboxes: dict[tuple[str, str], list[str]] = defaultdict(list)
    containers: list[ContainerInfo] = [*([inv.master] if inv.master else []), *inv.workers]
    for c in containers:
        sandboxes[(c.node, c.sandbox)].append(c.name)
    shared = [names for (_, box), names in sandboxes.items() if box and len(names) > 1]
    if not claimed and not inv.workers:
        return check(
            "separate_network_namespaces",
            "skipped",
            "no workers to compare with the master: none reported a namespace and the "
            "cluster has no worker containers",
        )
    nodes = {node for node, _ in [*claimed, *sandboxes] if node}
    evidence = (
        f"master {master_ns}; {plural(len(set(claimed)), 'distinct worker namespace')} "
        f"reported by {plural(len(claimed), 'worker')}; "
        f"{plural(len(sandboxes), 'engine sandbox')} for {plural(len(containers), 'container')}"
    )
    if len(nodes) > 1:
        evidence += f" on {plural(len(nodes), 'machine')}"
    if same:
        evidence += f"; in the master's namespace: {', '.join(same)}"
    if shared:
        evidence += "; sharing a sandbox: " + "; ".join(", ".join(n) for n in shared)
    if not claimed and not same and not shared:  # the engine's side only: no worker reported
        return check("separate_network_namespaces", "skipped",
                     f"no worker reported its namespace (no task ran); {evidence}")  # fmt: skip
    ok = not same and not shared and bool(master_ns)
    return check("separate_network_namespaces", verdict(ok), evidence)


def isolation(probe: ExecResult) -> CheckDict:
    """A container on a network the master is not on cannot reach the master's port.

    Only a probe that ran and reported every target unreachable (exit 1) passes: one that
    did not start, could not parse its arguments or was killed proves nothing.
    """
    lines = [line for line in probe.stdout.splitlines() if line.strip()]
    unreachable = all(line.startswith("unreachable ") for line in lines)
    text = " / ".join(lines) or "no output"
    if probe.exit_code not in (0, 1):
        text += f" (the probe itself failed: exit {probe.exit_code})"
    ok = probe.exit_code == 1 and bool(lines) and unreachable
    return check("isolation", verdict(ok), f"probe on {probe.stderr or 'another network'}: {text}")


def results_crossed_machines(report: Report, inv: Inventory) -> CheckDict:
    """Results arrived from workers on other machines than the master's: each peer IP belongs
    to a task the engine places on a node, and that node is not the master's. Skipped on
    one machine (the local backend), where nothing can cross machines."""
    machines = {n.name for n in inv.nodes}
    if len(machines) < 2:
        return check(
            "results_crossed_machines", "skipped",
            f"one machine ({', '.join(sorted(machines)) or 'unknown'}): nothing crosses machines",
        )  # fmt: skip
    if inv.master is None or not inv.master.node:
        return check("results_crossed_machines", "fail", "the master's node is unknown")
    if not report.results_by_peer:
        return check("results_crossed_machines", "skipped", "no results to judge")
    per_node: dict[str, int] = defaultdict(int)
    bad = []
    for ip, n in _by_address(report):
        owner = inv.owner_of(ip) if ip else None
        if owner is None or not owner.node:
            bad.append(f"{ip or '?'} (no task on a known node) {n}")
        elif owner.node == inv.master.node:
            bad.append(f"{ip} ({owner.name} on the master's node {owner.node}) {n}")
        else:
            per_node[owner.node] += n
    crossed = sum(per_node.values())
    evidence = (
        f"{crossed}/{report.totals.ok} results from "
        f"{plural(len(per_node), 'other machine')} than the master's ({inv.master.node}): "
        + ", ".join(f"{node} {n}" for node, n in sorted(per_node.items()))
    )
    if bad:
        evidence += "; not across machines: " + ", ".join(bad)
    ok = not bad and crossed == report.totals.ok and crossed > 0
    return check("results_crossed_machines", verdict(ok), evidence)


def job_checks(report: Report, inv: Inventory, expected: list[str]) -> list[CheckDict]:
    """The checks that read a job's report against the engine's inventory."""
    return [
        tasks_answered_once(report),
        every_worker_contributed(report, inv, expected),
        results_crossed_the_network(report, inv),
        results_crossed_machines(report, inv),
        separate_network_namespaces(report, inv),
    ]
