"""``ChaosRun``: a job on the running cluster, a fault injected while it runs, the verdict.

Everything a scenario needs is checked before any job starts (``plan``): the scenario and
its target, the job it runs, what the backend can do and what the kernel has. A refusal
(``ChaosRefused``, exit 2) changes nothing. Then each planned run (``execute``):

1. waits until every worker of the file is connected (bounded), so that each run starts
   from the same cluster;
2. runs the job (``ClusterRun.job``) in a thread, recording the master's progress lines;
3. ``at`` seconds after the first one, injects the fault; ``for`` seconds later (or when the
   job ends, if sooner) heals it; both are marks for the dashboard (``marks``);
4. waits for the job's report (bounded by the job's time-out), and judges it
   (``verdict.judge``), with the recovery time from the progress (``recovery``).

A fault is always healed: after an error, and after Ctrl-C (which also cancels the job).
A fault that cannot be healed ends the whole run with an error naming what is left.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distproc.report import Report
from distproc.text import plural

from .. import checks as e2e
from ..backends.base import EngineError, ExecResult, Inventory
from ..backends.faults import KERNEL_FEATURES, Faults
from ..cluster import ClusterRun, Outcome, job_overrides, parse_report
from ..events import Events
from ..model import ChaosEntry, OrchestrateError
from ..model.chaos import DEFAULT_AT, DEFAULT_RATE, SCENARIOS, ScenarioSpec, target_problem
from .marks import append_mark
from .recovery import Sample, recovery
from .scenarios import IMPLEMENTATIONS, Context, Scenario, Target
from .verdict import Verdict, judge

READY_TIMEOUT = 60.0  # seconds for every worker to be connected before a run
FIRST_PROGRESS_TIMEOUT = 60.0  # seconds from submit to the job's first progress line
JOIN_MARGIN = 60.0  # seconds past the job's time-out before its thread is given up on
LATE_SETTLE = 1.0  # seconds after a heal for late results to reach the master
TICK = 0.05


class ChaosRefused(OrchestrateError):
    """A scenario that cannot run here, said before anything changed (exit 2)."""

    exit_code = 2


class NotHealed(OrchestrateError):
    """A fault that could not be undone: the cluster is left faulty (exit 1)."""


@dataclass
class Planned:
    """One run, resolved and checked: its scenario, target, times, job and options."""

    entry: ChaosEntry
    spec: ScenarioSpec
    impl: Scenario
    target: Target
    at: float
    duration: float
    overrides: dict[str, Any]
    job: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)


class Recorder:
    """``Events`` passed on to ``inner``, with the job's progress recorded as ``Sample``s."""

    def __init__(self, inner: Events) -> None:
        self.inner = inner
        self.samples: list[Sample] = []
        self.total = -1
        self.changed = threading.Condition()

    def progress(self, key: str, done: int, total: int, label: str = "") -> None:
        if key == "job":
            with self.changed:
                self.samples.append(Sample(time.monotonic(), done))
                self.total = total
                self.changed.notify_all()
        self.inner.progress(key, done, total, label)

    def step(self, message: str) -> None:
        self.inner.step(message)

    def info(self, message: str) -> None:
        self.inner.info(message)

    def detail(self, message: str) -> None:
        self.inner.detail(message)

    def warn(self, message: str) -> None:
        self.inner.warn(message)

    @property
    def finished(self) -> bool:
        return bool(self.samples) and self.samples[-1].done >= self.total

    def wait(self, until: Callable[[], bool], deadline: float) -> bool:
        """Until ``until()`` or ``deadline`` (monotonic); whether ``until()`` became true."""
        with self.changed:
            while not until():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, TICK))
        return True


@dataclass
class Timeline:
    """One run's clock (monotonic): the job's first progress line (``t0``), the injection;
    the inventories seen during the job (whose addresses its results came from)."""

    recorder: Recorder
    job: JobThread
    inventories: list[Inventory]
    t0: float = 0.0
    began: float = 0.0  # the scenario started to act (its first look, its first call)
    injected: float = 0.0  # the fault took hold
    too_late: bool = False  # the job ended before the fault was due
    added: list[str] = field(default_factory=list)  # workers the fault added


class JobThread:
    """``ClusterRun.job`` in a thread: its outcome, or the exception it raised."""

    def __init__(self, work: Callable[[], Outcome]) -> None:
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(work,), name="chaos-job",
                                       daemon=True)  # fmt: skip
        self.thread.start()

    def _run(self, work: Callable[[], Outcome]) -> None:
        try:
            self.outcome = work()
        except BaseException as exc:  # raised again in the main thread
            self.error = exc

    @property
    def ended(self) -> bool:
        return not self.thread.is_alive()


class ChaosRun:
    """Chaos scenarios on the cluster ``runner`` runs (see the module docstring)."""

    def __init__(
        self, runner: ClusterRun, job_timeout: float = 900.0, marks: Path | None = None
    ) -> None:
        self.runner = runner
        self.cluster = runner.cluster
        self.backend = runner.backend
        self.events = runner.events
        self.job_timeout = job_timeout
        self.marks = marks
        self.faults: Faults | None = None
        self.kernel: dict[str, str] = {}  # what was probed, for the JSON

    # -- before anything runs -------------------------------------------------------------
    def plan(self, entries: list[ChaosEntry], cli_job: dict[str, Any]) -> list[Planned]:
        """Each entry resolved and checked against the backend and the kernel; raises
        ``ChaosRefused`` (nothing changed) for the first that cannot run."""
        inv = self.runner.running()
        try:
            faults = self.backend.faults(self.cluster.name, inv.run)
        except EngineError as exc:
            raise ChaosRefused(f"chaos on this cluster: {exc}") from None
        self.faults = faults
        planned = [self._plan(entry, cli_job, inv, faults) for entry in entries]
        needs = {f: who for p in planned for f, who in p.impl.needs(p.entry).items()}
        if needs:
            self.events.step("probing the kernel for what the faults need (tbf, netem, iptables)")
            self.kernel = faults.kernel_features(self.events)
            for feature in KERNEL_FEATURES:
                why = self.kernel.get(feature, "")
                if feature in needs and why:
                    raise ChaosRefused(
                        f"{needs[feature]} needs {feature}, which this kernel lacks (probed in "
                        f"a throwaway namespace: {why}); nothing was changed"
                    )
        return planned

    def _plan(
        self, entry: ChaosEntry, cli_job: dict[str, Any], inv: Inventory, faults: Faults
    ) -> Planned:
        spec, impl = SCENARIOS[entry.scenario], IMPLEMENTATIONS[entry.scenario]
        lacking = sorted(impl.uses - faults.operations)
        if lacking:
            why = "; ".join(faults.missing.get(op, op) for op in lacking)
            raise ChaosRefused(
                f"{spec.name} is not supported on the {faults.backend} backend: it needs "
                f"{', '.join(lacking)} ({why}); nothing was changed"
            )
        given = {**(entry.job.given() if entry.job else {}), **cli_job}
        try:
            overrides, warnings = job_overrides(self.cluster, given)
        except ValueError as exc:
            raise ChaosRefused(f"{spec.name}: job: {exc}") from None
        for warning in warnings:
            self.events.warn(warning)
        job = {**self.cluster.job.spec(), **overrides}
        options = {"rate": entry.rate, "delay": entry.delay, "loss": entry.loss}
        options = {k: v for k, v in options.items() if k in spec.options and v is not None}
        if spec.name == "slow-link":
            options["rate"] = entry.rate or DEFAULT_RATE
        at = entry.at if entry.at is not None else DEFAULT_AT
        duration = spec.duration(entry.for_, float(job["lease_seconds"]))
        options = {"at": at, "for": duration, **options}
        return Planned(
            entry=entry,
            spec=spec,
            impl=impl,
            target=self._target(spec, entry.target, inv),
            at=at,
            duration=duration,
            overrides=overrides,
            job=job,
            options=options,
        )

    def _target(self, spec: ScenarioSpec, given: str | None, inv: Inventory) -> Target:
        """What ``given`` names on the engine (the first worker, or group, by default)."""
        c = self.cluster
        if spec.target == "master":
            if inv.master is None:
                raise ChaosRefused(f"{spec.name}: the cluster has no master")
            return Target(inv.master.name, inv.master)
        if spec.target == "group":
            groups = [g.name for g in c.workers if g.count]
            name = given or (groups[0] if groups else "")
            if given and (why := target_problem(c, spec, given)):
                raise ChaosRefused(f"{spec.name} --target: {why}")
            if not name:
                raise ChaosRefused(f"{spec.name}: the file has no worker group to scale")
            return Target(name, group=name)
        names = self.backend.worker_names(c)
        if not names:
            raise ChaosRefused(f"{spec.name}: the cluster has no workers")
        full = names[0] if given is None else given
        if full not in names:
            full = f"{c.name}-{given}"
        if full not in names:
            short = ", ".join(n.removeprefix(f"{c.name}-") for n in names)
            raise ChaosRefused(f"{spec.name} --target: no worker {given!r} (workers: {short})")
        running = [w for w in inv.workers if (w.identity or w.name) == full]
        if not running or running[0].state != "running":
            state = running[0].state if running else "not there"
            raise ChaosRefused(f"{spec.name}: worker {full} is {state}, not running")
        return Target(full, running[0], running[0].group)

    # -- running ----------------------------------------------------------------------------
    def execute(self, planned: list[Planned]) -> list[Verdict]:
        """Each planned run in turn; a fault that could not be healed stops the rest."""
        verdicts: list[Verdict] = []
        try:
            for i, p in enumerate(planned, 1):
                self.events.step(
                    f"chaos {i}/{len(planned)}: {p.spec.name} on {p.target.name} at {p.at:g}s "
                    f"for {p.duration:g}s ({plural(p.job['tasks'], p.job['kind'] + ' task')}, "
                    f"{p.job['protocol']})"
                )
                try:
                    verdicts.append(self.run_one(p))
                except NotHealed as exc:
                    verdicts.append(self._verdict(p, str(exc)))
                    verdicts += [self._verdict(rest, "not run: an earlier fault was not healed")
                                 for rest in planned[i:]]  # fmt: skip
                    break
        finally:
            if self.faults is not None:
                self.faults.cleanup()
        return verdicts

    def _verdict(self, p: Planned, reason: str = "") -> Verdict:
        """An error verdict until judged otherwise."""
        return Verdict(p.spec.name, str(p.job["protocol"]), p.target.name, reason=reason,
                       options=p.options)  # fmt: skip

    def run_one(self, p: Planned) -> Verdict:
        """One run (see the module docstring); ``NotHealed`` if its fault stayed."""
        v = self._verdict(p)
        ready = self.runner.wait_ready(READY_TIMEOUT)
        if not ready["ok"]:
            v.reason = f"the cluster was not ready: {ready['evidence']}"
            return v
        before = self.backend.inventory(self.cluster.name)
        if p.target.container is not None:  # the same worker, as the engine has it now
            try:
                p.target = self._target(p.spec, p.target.name, before)
            except ChaosRefused as exc:
                v.reason = str(exc)
                return v
        recorder = Recorder(self.events)
        job_runner = ClusterRun(self.cluster, self.backend, recorder, self.runner.config_dir,
                                self.runner.source)  # fmt: skip
        job = JobThread(lambda: job_runner.job(p.overrides, timeout=self.job_timeout))
        ctx = Context(self.cluster, self._faults(), before, self._control, p.entry, self.events)
        timeline = Timeline(recorder, job, [before])
        try:
            self._timeline(p, v, ctx, timeline)
        except KeyboardInterrupt:
            self.events.warn("interrupted: cancelling the job on the master")
            self.backend.control(self.cluster.name, ["cancel"])
            raise
        except NotHealed:
            self.backend.control(self.cluster.name, ["cancel"])
            raise
        except OrchestrateError as exc:  # the fault could not be injected (healed if it was)
            v.reason = f"{p.spec.name} on {p.target.name}: {exc}"
            self.backend.control(self.cluster.name, ["cancel"])
        job.thread.join(self.job_timeout + JOIN_MARGIN)
        if not job.ended:
            v.reason = f"the job did not end within {self.job_timeout + JOIN_MARGIN:.0f}s"
            return v
        if job.error is not None:
            if not isinstance(job.error, OrchestrateError):
                raise job.error
            v.reason = f"the job: {job.error}"
            return v
        if v.reason and v.injected_at is None and not timeline.too_late:
            return v  # an error before anything was injected: no verdict on the job
        return self._judge(v, job.outcome, timeline)

    def _timeline(self, p: Planned, v: Verdict, ctx: Context, tl: Timeline) -> None:
        """Wait for the job, inject at ``at``, heal after ``for`` (or at the job's end);
        a fault in place when anything goes wrong is healed before this returns."""
        rec, job = tl.recorder, tl.job
        rec.wait(lambda: bool(rec.samples) or job.ended, time.monotonic() + FIRST_PROGRESS_TIMEOUT)
        if not rec.samples:
            v.reason = "the job showed no progress"  # its own error, if any, is said later
            return
        tl.t0 = rec.samples[0].t
        if rec.wait(lambda: rec.finished or job.ended, tl.t0 + p.at):
            tl.too_late = True
            v.reason = (f"the job ended before the fault was due at {p.at:g}s: nothing was "
                        "injected (give it more tasks, or an earlier --at)")  # fmt: skip
            return
        ctx.inventory = self.backend.inventory(self.cluster.name)
        tl.began = time.monotonic()
        injected = p.impl.inject(ctx, p.target)
        try:
            tl.injected = injected.since or time.monotonic()
            v.injected_at = tl.injected - tl.t0
            self._say(v, v.injected_at, injected.what)
            tl.added += injected.added
            tl.inventories.append(self.backend.inventory(self.cluster.name))
            rec.wait(lambda: rec.finished or job.ended, tl.injected + p.duration)
        finally:
            try:
                what = p.impl.heal(ctx, p.target, injected)
            except Exception as exc:
                self.events.warn(f"could not heal {p.spec.name} on {p.target.name}: {exc}")
                raise NotHealed(
                    f"could not heal {p.spec.name} on {p.target.name}: {exc}; the cluster is "
                    "left faulty (`orchestrate down`, then `up`, starts it afresh)"
                ) from exc
        v.healed_at = time.monotonic() - tl.t0
        self._say(v, v.healed_at, what + (" (the job had ended)" if rec.finished else ""))

    def _judge(self, v: Verdict, outcome: Outcome | None, tl: Timeline) -> Verdict:
        assert outcome is not None and outcome.job_report is not None
        report = outcome.job_report
        if v.healed_at is not None:
            report = self._late(v, report)
        inv = self.backend.inventory(self.cluster.name)
        for snapshot in reversed(tl.inventories):  # who had which address during the job
            inv.remember(snapshot)
        expected = [*self.backend.worker_names(self.cluster), *tl.added]
        checks = e2e.job_checks(report, inv, expected)
        if tl.recorder.samples:
            v.job_seconds = tl.recorder.samples[-1].t - tl.t0
        if v.injected_at is not None:
            v.recovery = recovery(tl.recorder.samples, tl.injected, tl.began)
        return judge(v, report, checks, injected=v.injected_at is not None)

    def _late(self, v: Verdict, report: Report) -> Report:
        """The job's report read again ``LATE_SETTLE`` s after the heal: a worker thawed or
        reconnected after the job ended sends its late results then, and the master counts
        them as duplicates (the report ``submit`` returned was read before they came)."""
        time.sleep(LATE_SETTLE)
        res = self._control(["report", "--job", str(report.job["id"])])
        if res.exit_code not in (0, 3) or not res.stdout.strip():
            self.events.warn(f"could not read the report again: {res.stderr.strip()[-200:]}")
            return report
        again = parse_report(res.stdout)
        late = again.totals.duplicates - report.totals.duplicates
        if late:
            v.steps.append(f"{plural(late, 'late result')} after the job ended: duplicates")
        return again

    def _say(self, v: Verdict, at: float | None, what: str) -> None:
        when = f"{at:.2f}s " if at is not None else ""
        v.steps.append(when + what)
        self.events.info(f"chaos: {when}{what}")
        if self.marks is not None:
            append_mark(self.marks, "chaos", f"{v.scenario}: {what}")

    def _faults(self) -> Faults:
        assert self.faults is not None, "plan() first"
        return self.faults

    def _control(self, argv: list[str]) -> ExecResult:
        return self.backend.control(self.cluster.name, argv)
