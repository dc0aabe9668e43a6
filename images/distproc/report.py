"""The report of a job: one typed structure for both protocols, with the master's own checks.

``Report.to_dict()`` is what the master sends and the CLI prints as JSON; ``Report.from_dict``
reads it back (the orchestrator does), so every reader uses fields, not strings. The keys do
not change with the protocol: ``totals.lost`` is always there (0 under ``leased``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from . import kinds
from .ledger import (
    CLASSIC_GUARANTEE,
    DEAD,
    FAILED,
    LEASED,
    LEASED_GUARANTEE,
    LOST,
    MAX_LISTED,
    OK,
    PENDING,
    Ledger,
)  # fmt: skip
from .text import ip_sorted

PASS, FAIL, SKIPPED = "pass", "fail", "skipped"
Status = Literal["pass", "fail", "skipped"]
STATUSES: tuple[Status, ...] = (PASS, FAIL, SKIPPED)


@dataclass
class Check:
    """One verdict, the one shape of a check for the master's report and the orchestrator's
    end-to-end checks alike: ``skipped`` when there was nothing to judge (never a pass).

    ``ok`` (``status != "fail"``) is kept beside ``status`` so that readers that only ask
    "did it fail?" stay right. It is derived; given (as ``from_dict`` does) it must agree,
    so a report whose verdicts contradict themselves is refused, not half-believed.
    """

    name: str
    status: Status
    evidence: str
    ok: bool | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(
                f"check {self.name!r}: status must be one of {STATUSES}, not {self.status!r}"
            )
        derived = self.status != FAIL
        if self.ok is not None and self.ok is not derived:
            raise ValueError(f"check {self.name!r}: ok {self.ok!r} contradicts {self.status!r}")
        self.ok = derived

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape, in the key order the orchestrator has always printed."""
        return {"name": self.name, "status": self.status, "ok": self.ok, "evidence": self.evidence}


def check(name: str, ok: bool | None, evidence: str) -> Check:
    """``ok`` None means: nothing to judge, the check is skipped."""
    return Check(name, SKIPPED if ok is None else PASS if ok else FAIL, evidence)


@dataclass
class Totals:
    tasks: int = 0
    ok: int = 0
    failed: int = 0
    dead: int = 0
    lost: int = 0
    duplicates: int = 0
    stale: int = 0
    retries: int = 0
    expired_leases: int = 0
    wrong_values: int = 0


@dataclass
class Letter:
    """A task that did not end ok: who had it last and why."""

    id: int
    attempts: int
    error: str
    worker: str | None = None
    peer: str | None = None


@dataclass
class WorkerShare:
    id: str
    identity: dict[str, Any]
    peers: list[str]
    results_by_peer: dict[str, int]
    tasks: int
    failed: int
    duplicates: int
    busy_seconds: float | None


@dataclass
class Report:
    job: dict[str, Any]
    guarantee: str
    finished: bool
    totals: Totals
    dead_letters: list[Letter]
    failures: list[Letter]
    lost: list[Letter]
    workers: list[WorkerShare]
    results_by_peer: dict[str, int]
    waited_seconds: float
    elapsed_seconds: float
    throughput: float
    master: dict[str, Any]
    checks: list[Check]
    ok: bool
    summary: str
    values: dict[str, Any] = field(default_factory=dict)  # dropped or streamed, and where
    results: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.results is None:
            del out["results"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """Read a report back; raises TypeError/KeyError if it is not one of ours."""
        d = dict(data)
        d["totals"] = Totals(**d["totals"])
        for key in ("dead_letters", "failures", "lost"):
            d[key] = [Letter(**x) for x in d[key]]
        d["workers"] = [WorkerShare(**w) for w in d["workers"]]
        d["checks"] = [Check(**c) for c in d["checks"]]
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise TypeError(f"not a distproc report: unknown keys {sorted(unknown)}")
        return cls(**d)

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)


def checks(job: Ledger) -> list[Check]:
    """Every id accounted for once, every value right (built-in kinds), every task ok."""
    states = job.state_counts()
    c = job.counts
    final = states[OK] + states[FAILED] + states[DEAD] + states[LOST]
    recount_agrees = [states[s] for s in (OK, FAILED, DEAD, LOST)] == [
        c["ok"], c["failed"], c["dead"], c["lost"]
    ]  # fmt: skip
    unfinished = job.unfinished() if states[PENDING] + states[LEASED] else []
    out = [
        check(
            "every_id_accounted",
            final == job.total and recount_agrees and not unfinished,
            f"{final}/{job.total} ids in a final state (ok {states[OK]}, failed "
            f"{states[FAILED]}, dead {states[DEAD]}, lost {states[LOST]}); "
            f"{c['duplicates']} duplicate results counted, not reported"
            + (f"; unfinished: {unfinished}" if unfinished else ""),
        )
    ]
    if not kinds.checkable(job.spec.kind):
        out.append(check("values_correct", None,
                         f"values not checked: custom kind {job.spec.kind}"))  # fmt: skip
    elif not states[OK]:
        out.append(check("values_correct", None, "no value arrived to check"))
    else:
        wrong = c["wrong"]
        out.append(
            check(
                "values_correct",
                not wrong,
                f"{states[OK] - wrong}/{states[OK]} ok values match {job.spec.kind}(), "
                "checked on arrival" + (f"; wrong: {job.wrong}" if wrong else ""),
            )
        )
    out.append(check("all_ok", states[OK] == job.total, f"{states[OK]}/{job.total} tasks ended ok"))
    return out


def _workers(job: Ledger, workers: list[Any]) -> list[WorkerShare]:
    leased = job.spec.protocol == "leased"
    return [
        WorkerShare(
            id=workers[index].wid,
            identity=workers[index].identity,
            peers=ip_sorted(t.peers),
            results_by_peer={ip: t.peers[ip] for ip in ip_sorted(t.peers)},
            tasks=t.tasks,
            failed=t.failed,
            duplicates=t.duplicates,
            busy_seconds=round(t.busy, 6) if leased else None,
        )
        for index, t in sorted(job.tally.items())
    ]


def _letters(job: Ledger, state: int) -> list[Letter]:
    return [Letter(**x) for x in job.letters[state]]


def summary(job: Ledger, totals: Totals, lost: list[Letter], dead: list[Letter],
            failed: list[Letter]) -> str:  # fmt: skip
    """One line a person reads first: how it ended, and which tasks did not end ok, by name."""
    parts = [f"{totals.ok}/{totals.tasks} tasks ok"]
    for word, count, letters in (("lost", totals.lost, lost), ("dead", totals.dead, dead),
                                 ("failed", totals.failed, failed)):  # fmt: skip
        if not count:
            continue
        shown = letters[:3]
        named = "; ".join(
            f"task {x.id} (payload {job.payloads[x.id]!r})"
            + (f" held by {x.worker}" if x.worker else "") + (f" at {x.peer}" if x.peer else "")
            + f": {x.error}"
            for x in shown
        )  # fmt: skip
        more = f" (+{count - len(shown)} more)" if count > len(shown) else ""
        parts.append(f"{word} {count}: {named}{more}")
    if totals.wrong_values:
        parts.append(f"wrong values {totals.wrong_values}: tasks {job.wrong[:MAX_LISTED]}")
    if not job.done:
        parts.append("not finished")
    return "; ".join(parts)


def build(job: Ledger, workers: list[Any], master: dict[str, Any]) -> Report:
    """The report: totals, per-worker evidence, timing and the self-checks' verdict."""
    c = job.counts
    end = job.finished if job.finished is not None else job.clock()
    started = job.started if job.started is not None else end
    elapsed = max(end - started, 1e-9)
    by_peer: Counter[str] = Counter()
    for tally in job.tally.values():
        by_peer.update(tally.peers)
    totals = Totals(
        tasks=job.total, ok=c["ok"], failed=c["failed"], dead=c["dead"], lost=c["lost"],
        duplicates=c["duplicates"], stale=c["stale"], retries=c["retries"],
        expired_leases=c["expired"], wrong_values=c["wrong"],
    )  # fmt: skip
    verdict = checks(job)
    lost, dead, failed = _letters(job, LOST), _letters(job, DEAD), _letters(job, FAILED)
    return Report(
        job={"id": job.id, **job.spec.as_dict()},
        guarantee=CLASSIC_GUARANTEE if job.spec.protocol == "classic" else LEASED_GUARANTEE,
        finished=job.done,
        totals=totals,
        dead_letters=dead,
        failures=failed,
        lost=lost,
        workers=_workers(job, workers),
        results_by_peer={ip: by_peer[ip] for ip in ip_sorted(by_peer)},
        waited_seconds=round(started - job.submitted, 6),
        elapsed_seconds=round(elapsed, 6),
        throughput=round(job.final / elapsed, 1),
        master=master,
        checks=verdict,
        ok=all(ch.ok for ch in verdict),
        summary=summary(job, totals, lost, dead, failed),
        values=job.sink.describe(),
    )
