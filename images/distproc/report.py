"""The JSON report of a job, with the checks the master can make by itself."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from . import kinds
from .ledger import CLASSIC_GUARANTEE, DEAD, FAILED, LEASED_GUARANTEE, OK, STATE_NAMES, Ledger

if TYPE_CHECKING:
    from .broker import WorkerRecord

MAX_LISTED = 20


def _check(name: str, ok: bool, evidence: str) -> dict[str, Any]:
    return {"name": name, "ok": ok, "evidence": evidence}


def expected_values(job: Ledger) -> None:
    """Compute (and cache) the right values of a ``cpu`` job: the one slow kind to check."""
    if job.spec.kind == "cpu":
        for payload in set(job.payloads):
            kinds.expected("cpu", payload)


def checks(job: Ledger) -> list[dict[str, Any]]:
    """Every id accounted for once, every value right (built-in kinds), every task ok."""
    states = Counter(job.state)
    c = job.counts
    final = states[OK] + states[FAILED] + states[DEAD]
    recount_agrees = (states[OK], states[FAILED], states[DEAD]) == (c["ok"], c["failed"], c["dead"])
    unfinished = [t for t, s in enumerate(job.state) if s not in (OK, FAILED, DEAD)]
    out = [
        _check(
            "every_id_accounted",
            final == job.total and recount_agrees and not unfinished,
            f"{final}/{job.total} ids in a final state "
            f"(ok {states[OK]}, failed {states[FAILED]}, dead {states[DEAD]}); "
            f"{c['duplicates']} duplicate results counted, not reported"
            + (f"; unfinished: {unfinished[:MAX_LISTED]}" if unfinished else ""),
        )
    ]
    if kinds.checkable(job.spec.kind):
        wrong = [
            t
            for t, s in enumerate(job.state)
            if s == OK and job.values[t] != kinds.expected(job.spec.kind, job.payloads[t])
        ]
        out.append(
            _check(
                "values_correct",
                not wrong,
                f"{states[OK] - len(wrong)}/{states[OK]} ok values match {job.spec.kind}()"
                + (f"; wrong: {wrong[:MAX_LISTED]}" if wrong else ""),
            )
        )
    else:
        out.append(_check("values_correct", True, f"not checkable for custom kind {job.spec.kind}"))
    not_ok = job.total - states[OK]
    out.append(_check("all_ok", not_ok == 0, f"{states[OK]}/{job.total} tasks ended ok"))
    return out


def _workers(job: Ledger, workers: list[WorkerRecord]) -> list[dict[str, Any]]:
    out = []
    for index, tally in sorted(job.tally.items()):
        rec = workers[index]
        out.append(
            {
                "id": rec.wid,
                "identity": rec.identity,
                "peers": sorted(tally.peers),
                "results_by_peer": dict(sorted(tally.peers.items())),
                "tasks": tally.tasks,
                "failed": tally.failed,
                "duplicates": tally.duplicates,
                "busy_seconds": round(tally.busy, 6) if job.spec.protocol == "leased" else None,
            }
        )
    return out


def _letters(job: Ledger, state: int) -> list[dict[str, Any]]:
    tids = [t for t, s in enumerate(job.state) if s == state]
    return [
        {"id": t, "attempts": job.attempts[t], "error": job.errors.get(t, "")}
        for t in tids[:MAX_LISTED]
    ]


def build(
    job: Ledger, workers: list[WorkerRecord], master: dict[str, Any], results: bool = False
) -> dict[str, Any]:
    """The report: totals, per-worker evidence, timing and the self-checks' verdict."""
    c = job.counts
    end = job.finished if job.finished is not None else job.clock()
    started = job.started if job.started is not None else end
    elapsed = max(end - started, 1e-9)
    classic = job.spec.protocol == "classic"
    by_peer: Counter[str] = Counter()
    for tally in job.tally.values():
        by_peer.update(tally.peers)
    totals = {
        "tasks": job.total,
        "ok": c["ok"],
        "failed": c["failed"],
        ("lost" if classic else "dead"): c["dead"],
        "duplicates": c["duplicates"],
        "stale": c["stale"],
        "retries": c["retries"],
        "expired_leases": c["expired"],
    }
    verdict = checks(job)
    rep: dict[str, Any] = {
        "job": {"id": job.id, **job.spec.as_dict()},
        "guarantee": CLASSIC_GUARANTEE if classic else LEASED_GUARANTEE,
        "finished": job.done,
        "totals": totals,
        "dead_letters": _letters(job, DEAD),
        "failures": _letters(job, FAILED),
        "workers": _workers(job, workers),
        "results_by_peer": dict(sorted(by_peer.items())),
        "waited_seconds": round(started - job.submitted, 6),
        "elapsed_seconds": round(elapsed, 6),
        "throughput": round(job.final / elapsed, 1),
        "master": master,
        "checks": verdict,
        "ok": all(ch["ok"] for ch in verdict),
    }
    if results:
        rep["results"] = [
            {
                "id": t,
                "state": STATE_NAMES[s],
                "value": job.values[t],
                "worker": workers[job.by_worker[t]].wid if job.by_worker[t] >= 0 else None,
                "peer": job.peer_names[job.by_peer[t]] if job.by_peer[t] >= 0 else None,
                "attempts": job.attempts[t],
            }
            for t, s in enumerate(job.state)
        ]
    return rep
