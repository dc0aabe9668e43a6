"""The soak (issue 9, "Must have" 5): back-to-back jobs on a real cluster, a random fault
injected while each runs, for a bounded time, and one verdict at the end.

It is ``orchestrate chaos`` run many times, with the choices made by a seeded ``random``:
each job gets a scenario, a target and an injection time, or no fault at all (a control
job, counted as ``none``). Every scenario of the registry (``IMPLEMENTATIONS`` and
``SCENARIOS``) is a candidate, so one added later (``restart-master``) is picked up with no
change here; a candidate that ``ChaosRun.plan`` refuses on this backend or kernel (a
slow-link with netem's delay, where ``sch_netem`` is missing) is listed once, with its reason,
and never picked. The whole schedule is drawn before the first job (so a seed gives the same
sequence of picks, whatever the jobs' timing) and planned at once (one kernel probe).

The deadline: no job starts after ``--minutes``; the one in flight finishes, bounded by its
job time-out (``ChaosRun.run_one``). The schedule is at most ``max_jobs`` long (a job takes a
couple of seconds at the least), so the loop is bounded in count as well as in time.

The verdict: jobs, tasks, the faults injected by kind, lost (the sum of every job's; it must
be 0), duplicates, the master's container memory at the start and at the end, and the
restarts of the master seen (its ``instance`` in ``status`` changed). Exit 3 if anything was
lost or a job's check failed (a result counted twice), else 1 if a job ended in an error,
else 0. A table on stdout; the same dict as JSON with ``--json PATH``.

The cluster is brought up if it is not running, and taken down at the end only then.

CLI: ``python bench/soak.py --minutes M [--seed S] [-f FILE] [--json PATH]`` (``make soak``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from distproc.text import plural
from rich.console import Console
from rich.table import Table

from orchestrate.backends import make_backend
from orchestrate.chaos.runner import READY_TIMEOUT, ChaosRefused, ChaosRun, NotHealed, Planned
from orchestrate.chaos.scenarios import IMPLEMENTATIONS
from orchestrate.chaos.verdict import Verdict, judge
from orchestrate.cli import EXIT_CHECK_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_OK, EXIT_RUNTIME
from orchestrate.cluster import ClusterNotRunning, ClusterRun
from orchestrate.events import Events
from orchestrate.model import ChaosEntry, ConfigError, OrchestrateError, load_cluster
from orchestrate.model.chaos import SCENARIOS
from orchestrate.ui import ConsoleEvents

DEFAULT_FILE = Path(__file__).resolve().parent / "topologies" / "soak.yaml"
DEFAULT_MINUTES = 10.0
MAX_MINUTES = 24 * 60.0
#: seconds one job may run (its fault and heal included) before it is given up on
JOB_TIMEOUT = 180.0
#: share of jobs run with no fault: control jobs, counted as "none"
NONE_SHARE = 0.15
NONE = "none"
#: seconds after the job's first progress when its fault is injected, drawn uniformly: the
#: soak topology's job takes about 8 s without a fault, so every fault lands mid-job
AT_RANGE = (0.5, 3.0)
#: a job takes at least this long (submit, a few rounds, the report): bounds the schedule
MIN_JOB_SECONDS = 2.0
#: scenarios issue 9 asks the soak to include; said in the verdict when the registry lacks one
WANTED = ("restart-master",)
#: a candidate beyond the registry's defaults: slow-link with netem's delay, refused (and
#: listed) where the kernel has no sch_netem, as here
VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("slow-link (netem delay)", {"scenario": "slow-link", "delay": 50}),
)
# the orchestrator's one table: a loss is a failed check (3), an error a runtime one (1)
EXIT_ERROR, EXIT_USAGE, EXIT_LOST = EXIT_RUNTIME, EXIT_CONFIG, EXIT_CHECK_FAILED


@dataclass(frozen=True)
class Candidate:
    """A fault the soak may pick: a label for the verdict, and its ``chaos:`` entry's fields
    (without target and ``at``, which are drawn per job)."""

    label: str
    fields: dict[str, Any]

    @property
    def scenario(self) -> str:
        return str(self.fields["scenario"])


@dataclass
class Pick:
    """One job of the schedule: its kind (a scenario's name, or ``none``) and its entry."""

    kind: str
    entry: ChaosEntry | None = None

    def describe(self) -> str:
        if self.entry is None:
            return "no fault"
        e = self.entry
        on = f" on {e.target}" if e.target else ""
        return f"{self.kind}{on} at {e.at:g}s"


def candidates(only: Iterable[str] | None = None) -> list[Candidate]:
    """Every scenario the registry both declares and implements (``only``: those named), with
    its defaults, then the variants of those."""
    names = [n for n in SCENARIOS if n in IMPLEMENTATIONS]
    if only is not None:
        wanted = set(only)
        names = [n for n in names if n in wanted]
    out = [Candidate(n, {"scenario": n}) for n in names]
    out += [Candidate(label, f) for label, f in VARIANTS if f["scenario"] in names]
    return out


def unavailable() -> dict[str, str]:
    """The scenarios the soak should include (``WANTED``) that this build does not have."""
    return {
        name: "not in this build's scenario registry (orchestrate.model.chaos.SCENARIOS)"
        for name in WANTED
        if name not in SCENARIOS or name not in IMPLEMENTATIONS
    }


def available(chaos: ChaosRun, cands: list[Candidate]) -> tuple[list[Candidate], dict[str, str]]:
    """``cands`` split by what ``plan`` accepts here: (usable, {label: why refused})."""
    usable, refused = [], {}
    for c in cands:
        try:
            chaos.plan([ChaosEntry.model_validate(c.fields)], {})
        except ChaosRefused as exc:
            refused[c.label] = str(exc)
        else:
            usable.append(c)
    return usable, refused


def schedule(
    rng: random.Random,
    usable: list[Candidate],
    workers: list[str],
    groups: list[str],
    count: int,
    at_range: tuple[float, float] = AT_RANGE,
    none_share: float = NONE_SHARE,
) -> list[Pick]:
    """``count`` picks drawn from ``rng``: with chance ``none_share`` (always, if nothing is
    usable) no fault; else a candidate, a target of the kind its scenario acts on (a worker,
    a group; none for the master) and an injection time in ``at_range``."""
    picks = []
    for _ in range(count):
        if not usable or rng.random() < none_share:
            picks.append(Pick(NONE))
            continue
        c = rng.choice(usable)
        fields = {**c.fields, "at": round(rng.uniform(*at_range), 2)}
        spec = SCENARIOS[c.scenario]
        if spec.target == "worker" and workers:
            fields["target"] = rng.choice(workers)
        elif spec.target == "group" and groups:
            fields["target"] = rng.choice(groups)
        picks.append(Pick(c.scenario, ChaosEntry.model_validate(fields)))
    return picks


# -- the verdict ----------------------------------------------------------------------------
def job_record(n: int, pick: Pick, v: Verdict, started: float, seconds: float) -> dict[str, Any]:
    """One job in the verdict's ``runs``: the chaos verdict, without the report itself."""
    doc = v.as_json()
    doc.pop("report", None)
    doc["checks"] = [c for c in doc["checks"] if c["status"] == "fail"]
    return {"job": n, "kind": pick.kind, "injected": v.injected_at is not None,
            "started_s": round(started, 3), "seconds": round(seconds, 3), **doc}  # fmt: skip


def restarts_seen(instances: list[str | None]) -> int:
    """How often the master's ``instance`` changed between two readings (None: unread)."""
    known = [i for i in instances if i]
    return sum(1 for a, b in itertools.pairwise(known) if a != b)


def aggregate(runs: list[dict[str, Any]], faults_planned: int = 0) -> dict[str, Any]:
    """The totals of the jobs' records: jobs, tasks, faults injected by kind (``none`` for a
    job with no fault), those drawn but not injected (the job ended first, or an error came
    before), lost, duplicates, and the jobs that failed or ended in an error."""
    injected: Counter[str] = Counter()
    not_injected: Counter[str] = Counter()
    for r in runs:
        if r["kind"] == NONE:
            injected[NONE] += 1
        elif r["injected"]:
            injected[r["kind"]] += 1
        else:
            not_injected[r["kind"]] += 1
    lost = sum(r["tasks"]["lost"] for r in runs)
    failed = [r for r in runs if r["status"] == "fail"]
    errors = [r for r in runs if r["status"] == "error"]
    return {
        "jobs": len(runs),
        "tasks": sum(r["tasks"]["submitted"] for r in runs),
        "tasks_ok": sum(r["tasks"]["ok"] for r in runs),
        "faults": dict(sorted(injected.items())),
        "not_injected": dict(sorted(not_injected.items())),
        "lost": lost,
        "duplicates": sum(r["tasks"]["duplicates"] for r in runs),
        "failed": [{"job": r["job"], "kind": r["kind"], "reason": r["reason"]} for r in failed],
        "errors": [{"job": r["job"], "kind": r["kind"], "reason": r["reason"]} for r in errors],
    }


def exit_code(verdict: dict[str, Any]) -> int:
    """3 if anything was lost or a job failed a check; else 1 on any error; else 0."""
    if verdict["lost"] or verdict["failed"]:
        return EXIT_LOST
    if verdict["errors"] or verdict.get("error"):
        return EXIT_ERROR
    return EXIT_OK


# -- the run --------------------------------------------------------------------------------
class Soak:
    """Back-to-back jobs with random faults on ``runner``'s cluster (the module docstring)."""

    def __init__(
        self,
        runner: ClusterRun,
        minutes: float,
        seed: int,
        job_timeout: float = JOB_TIMEOUT,
        only: Iterable[str] | None = None,
        at_range: tuple[float, float] = AT_RANGE,
        max_jobs: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runner = runner
        self.cluster = runner.cluster
        self.backend = runner.backend
        self.events: Events = runner.events
        self.minutes = minutes
        self.seed = seed
        self.job_timeout = job_timeout
        self.only = None if only is None else list(only)
        self.at_range = at_range
        seconds = minutes * 60
        self.max_jobs = max_jobs or math.ceil(seconds / MIN_JOB_SECONDS) + 1
        self.clock = clock
        self.chaos = ChaosRun(runner, job_timeout=job_timeout)
        self.instances: list[str | None] = []

    def run(self) -> dict[str, Any]:
        """Bring the cluster up if need be, run the soak, take it down if it was brought up;
        the verdict (``exit_code`` in it)."""
        started = datetime.now(UTC).isoformat(timespec="seconds")
        brought_up = False
        verdict: dict[str, Any] = {}
        try:
            try:
                self.runner.running()
            except ClusterNotRunning:
                self.events.step(f"cluster {self.cluster.name!r} is not running: bringing it up")
                brought_up = True
                outcome = self.runner.up(run_job=False)
                if not outcome.ok:
                    failed = "; ".join(c["evidence"] for c in outcome.checks if not c["ok"])
                    raise OrchestrateError(f"the cluster did not get ready: {failed}") from None
            verdict = self._soak()
        except OrchestrateError as exc:
            verdict = {**aggregate([]), "error": str(exc)}
            self.events.warn(f"soak: {exc}")
        finally:
            if brought_up:
                self.events.step(f"taking down {self.cluster.name!r} (this soak brought it up)")
                self.runner.down()
        verdict.update(
            cluster=self.cluster.name,
            backend=self.backend.kind,
            started=started,
            minutes=self.minutes,
            seed=self.seed,
            brought_up=brought_up,
            taken_down=brought_up,
        )
        verdict["exit_code"] = exit_code(verdict)
        verdict["ok"] = verdict["exit_code"] == EXIT_OK
        return verdict

    def _soak(self) -> dict[str, Any]:
        t0 = self.clock()
        deadline = t0 + self.minutes * 60
        memory_start = self._master_memory()
        self.instances.append(self._instance())
        self.events.step("finding the scenarios this backend and kernel support")
        usable, refused = available(self.chaos, candidates(self.only))
        for label, why in refused.items():
            self.events.info(f"skipping {label}: {why}")
        missing = unavailable()
        for name, why in missing.items():
            self.events.info(f"not available: {name}: {why}")
        rng = random.Random(self.seed)
        workers = [n.removeprefix(f"{self.cluster.name}-")
                   for n in self.backend.worker_names(self.cluster)]  # fmt: skip
        groups = [g.name for g in self.cluster.workers if g.count]
        picks = schedule(rng, usable, workers, groups, self.max_jobs, self.at_range)
        planned = iter(self.chaos.plan([p.entry for p in picks if p.entry is not None], {}))
        jobs = [(p, next(planned) if p.entry is not None else None) for p in picks]
        self.events.step(
            f"soak: jobs for {self.minutes:g} min (seed {self.seed}), among "
            f"{', '.join(c.label for c in usable) or 'no fault'} and none"
        )
        runs: list[dict[str, Any]] = []
        try:
            for n, (pick, p) in enumerate(jobs, 1):
                now = self.clock()
                if now >= deadline:
                    break
                self._progress(now - t0)
                self.events.step(f"soak job {n} at {_clock(now - t0)}: {pick.describe()}")
                v = self._run(pick, p)
                end = self.clock()
                runs.append(job_record(n, pick, v, now - t0, end - now))
                self.instances.append(self._instance())
                self.events.info(
                    f"soak job {n}: {v.status}, {plural(v.tasks, 'task')}, {v.lost} lost, "
                    f"{v.duplicates} duplicates" + (f": {v.reason}" if v.status != "pass" else "")
                )
                if v.status == "error" and v.reason.startswith("could not heal"):
                    break  # the cluster is left faulty: nothing after this would be fair
        finally:
            if self.chaos.faults is not None:
                self.chaos.faults.cleanup()
        elapsed = self.clock() - t0
        self._progress(elapsed, done=True)
        return {
            **aggregate(runs),
            "seconds": round(elapsed, 1),
            "scenarios": [c.label for c in usable],
            "refused": refused,
            "unavailable": missing,
            "master": {
                "memory_start_bytes": memory_start,
                "memory_end_bytes": self._master_memory(),
                "restarts_seen": restarts_seen(self.instances),
            },
            "runs": runs,
        }

    def _run(self, pick: Pick, p: Planned | None) -> Verdict:
        """One job: through ``ChaosRun.run_one`` with its fault, or a plain job without."""
        if p is None:
            return self._plain()
        try:
            return self.chaos.run_one(p)
        except NotHealed as exc:
            return Verdict(p.spec.name, str(p.job["protocol"]), p.target.name, reason=str(exc),
                           options=p.options)  # fmt: skip

    def _plain(self) -> Verdict:
        """A job with no fault, judged as a chaos run is (a fault that did nothing)."""
        protocol = str(self.cluster.job.spec()["protocol"])
        v = Verdict(NONE, protocol, "-")
        ready = self.runner.wait_ready(READY_TIMEOUT)
        if not ready["ok"]:
            v.reason = f"the cluster was not ready: {ready['evidence']}"
            return v
        t0 = time.monotonic()
        try:
            outcome = self.runner.job(timeout=self.job_timeout)
        except OrchestrateError as exc:
            v.reason = f"the job: {exc}"
            return v
        assert outcome.job_report is not None
        v.job_seconds = time.monotonic() - t0
        return judge(v, outcome.job_report, outcome.checks, injected=True)

    def _progress(self, elapsed: float, done: bool = False) -> None:
        total = max(1, round(self.minutes * 60))
        shown = total if done else min(total, int(elapsed))
        self.events.progress("soak", shown, total, "soak (seconds)")

    def _instance(self) -> str | None:
        """The master's ``instance`` (a new one at every start), or None if unread."""
        try:
            res = self.backend.control(self.cluster.name, ["status", "--connect-timeout", "5"])
        except OrchestrateError:
            return None
        if res.exit_code != 0:
            return None
        master = json.loads(res.stdout).get("master") or {}
        return master.get("instance")

    def _master_memory(self) -> int | None:
        """Bytes the master's container uses now (the engine's figure, less page cache)."""
        try:
            inv = self.backend.inventory(self.cluster.name)
            usage = self.backend.memory_usage(self.cluster.name)
        except OrchestrateError:
            return None
        name = inv.master.name if inv.master is not None else self.cluster.master_name
        return usage.get(name)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**20:.1f} MiB"


def print_verdict(console: Console, v: dict[str, Any]) -> None:
    """The verdict as a table by kind, then the lines that say the rest."""
    table = Table(title=f"soak on {v['cluster']!r} ({v['backend']}): {v['minutes']:g} min, "
                  f"seed {v['seed']}")  # fmt: skip
    for col in ("kind", "jobs", "injected", "pass", "fail", "error", "tasks", "dup", "lost"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    runs = v.get("runs", [])
    for kind in sorted({r["kind"] for r in runs}):
        mine = [r for r in runs if r["kind"] == kind]
        status = Counter(r["status"] for r in mine)
        injected = "-" if kind == NONE else str(sum(r["injected"] for r in mine))
        table.add_row(kind, str(len(mine)), injected, str(status["pass"]),
                      str(status["fail"]), str(status["error"]),
                      str(sum(r["tasks"]["submitted"] for r in mine)),
                      str(sum(r["tasks"]["duplicates"] for r in mine)),
                      str(sum(r["tasks"]["lost"] for r in mine)))  # fmt: skip
    table.add_row("all", str(v["jobs"]), str(sum(n for k, n in v["faults"].items() if k != NONE)),
                  "", "", "", str(v["tasks"]), str(v["duplicates"]), str(v["lost"]))  # fmt: skip
    console.print(table)
    lines = [f"faults injected by kind: {_kinds(v['faults'])}"]
    if v.get("not_injected"):
        lines.append(f"drawn but not injected (the job ended first, or an error came before): "
                     f"{_kinds(v['not_injected'])}")  # fmt: skip
    m = v.get("master")
    if m:
        lines.append(f"master memory (its container): {_mib(m['memory_start_bytes'])} at the "
                     f"start, {_mib(m['memory_end_bytes'])} at the end; restarts of the master "
                     f"seen: {m['restarts_seen']}")  # fmt: skip
    for label, why in v.get("refused", {}).items():
        lines.append(f"skipped {label}: {why}")
    for name, why in v.get("unavailable", {}).items():
        lines.append(f"not available: {name}: {why}")
    for kind, said in (("FAIL", v["failed"]), ("ERROR", v["errors"])):
        lines += [f"{kind} job {r['job']} ({r['kind']}): {r['reason']}" for r in said]
    if v.get("error"):
        lines.append(f"ERROR: {v['error']}")
    how = "was brought up by the soak and taken down" if v["brought_up"] else (
        "was running before: left running")  # fmt: skip
    lines.append(f"cluster {v['cluster']!r} {how}")
    word = {EXIT_OK: "PASS", EXIT_LOST: "FAIL"}.get(v["exit_code"], "ERROR")
    lines.append(f"verdict: {word}: {plural(v['jobs'], 'job')}, {plural(v['tasks'], 'task')}, "
                 f"{v['lost']} lost, {v['duplicates']} duplicates "
                 f"(exit {v['exit_code']})")  # fmt: skip
    for line in lines:
        console.print(line, soft_wrap=True, markup=False, highlight=False)


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in counts.items()) or "none"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="soak", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--minutes",
        type=_minutes,
        default=DEFAULT_MINUTES,
        help=f"no new job starts after this (default {DEFAULT_MINUTES:g})",
    )
    p.add_argument("--seed", type=int, help="for the random picks (default: drawn, and said)")
    p.add_argument("-f", "--file", default=str(DEFAULT_FILE), help="the cluster file")
    p.add_argument("--json", metavar="PATH", help="write the verdict as JSON to PATH")
    p.add_argument("--job-timeout", type=float, default=JOB_TIMEOUT, metavar="S")
    p.add_argument(
        "--scenarios",
        type=lambda s: [x for x in s.split(",") if x],
        help="only these, comma-separated (default: every one supported here)",
    )
    return p


def _minutes(text: str) -> float:
    x = float(text)
    if not 0 < x <= MAX_MINUTES:
        raise argparse.ArgumentTypeError(f"must be > 0 and at most {MAX_MINUTES:g}")
    return x


def main(argv: list[str] | None = None, backend: Any = None) -> int:
    """The CLI; ``backend`` replaces the file's (a test's fake)."""
    args = build_parser().parse_args(argv)
    if args.scenarios:
        unknown = sorted(set(args.scenarios) - set(SCENARIOS))
        if unknown:
            print(f"soak: --scenarios: unknown {', '.join(unknown)} (known: "
                  f"{', '.join(SCENARIOS)})", file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
    try:
        cluster = load_cluster(args.file)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    events = ConsoleEvents()
    try:
        backend = backend or make_backend(cluster.backend, cluster)
        runner = ClusterRun(cluster, backend, events, Path(args.file).parent, args.file)
        soak = Soak(runner, args.minutes, seed, args.job_timeout, args.scenarios)
        verdict = soak.run()
    except OrchestrateError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        events.close()
    print_verdict(Console(highlight=False), verdict)
    if args.json:
        Path(args.json).write_text(json.dumps(verdict, indent=2, default=str) + "\n")
    return int(verdict["exit_code"])


if __name__ == "__main__":
    sys.exit(main())
