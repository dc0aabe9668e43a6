"""A cluster realised on a backend: ``up``, ``job``, ``check``, ``down`` and ``run(test)``.

Like Mininet's ``Mininet`` object for a ``Topo``: the model describes, this realises, and
``run(test)`` means start, test, stop.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from distproc.report import Report
from distproc.spec import spec_argv
from distproc.text import plural

from . import checks as e2e
from .backends.base import Backend, EngineError, Images, Inventory
from .events import Events
from .follow import JobFollower, JobLost, has_report
from .model import Cluster, ConfigError, OrchestrateError
from .preflight import resource_problems
from .state import ensure_authkey, save_report

T = TypeVar("T")
READY_POLL = 0.5


class JobFailed(OrchestrateError):
    """The job could not be run at all (not: it ran and a check failed)."""


class ClusterNotRunning(OrchestrateError):
    """``job`` or ``check`` on a cluster whose master is not running: said first, before any
    header, since nothing they would print next could be true (a runtime error: exit 1)."""


def parse_report(stdout: str) -> Report:
    """The master's report, read once where it enters orchestrate: from here on every reader
    uses typed fields. Output that is not one of our reports (another program, a version of
    the queue program with other keys) is a ``JobFailed`` naming what was wrong."""
    try:
        data = json.loads(stdout)
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}, not an object")
        return Report.from_dict(data)
    except (ValueError, TypeError, KeyError) as exc:  # JSONDecodeError is a ValueError
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        head = " ".join(stdout.split())
        head = head if len(head) <= 120 else head[:119] + "…"
        raise JobFailed(f"the master's output is not a distproc report ({what}): {head}") from None


@dataclass
class Outcome:
    """What ``up``, ``job`` or ``check`` found: the checks, the job's report and the inventory."""

    checks: list[dict[str, Any]] = field(default_factory=list)
    job_report: Report | None = None
    inventory: Inventory | None = None
    run: str = ""  # the id of the ``up`` that made the containers (their RUN label)
    #: a job ran in this command: its line and table are shown (``check`` may only read one)
    job_ran: bool = False
    #: what each restart of the master during the job did with it (``follow``)
    restarts: list[str] = field(default_factory=list)

    @property
    def report(self) -> dict[str, Any] | None:
        """The report in its JSON keys (``Report.to_dict()``), for output and for readers of
        the JSON (bench); checks and the human output read ``job_report``."""
        return self.job_report.to_dict() if self.job_report is not None else None

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.checks)

    def absorb(self, other: Outcome) -> None:
        """Take in a job's outcome: its checks, its report and the inventory it was read with."""
        self.checks += other.checks
        self.job_report = other.job_report
        self.inventory = other.inventory
        self.run = self.run or other.run
        self.job_ran = self.job_ran or other.job_ran
        self.restarts += other.restarts

    def failed(self) -> list[str]:
        return [c["name"] for c in self.checks if not c["ok"]]

    def rows(self) -> list[dict[str, Any]]:
        """The summary table: one row per worker container."""
        if self.inventory is None or self.job_report is None:
            return []
        per = e2e.results_per_container(self.job_report, self.inventory)
        elapsed = max(self.job_report.elapsed_seconds, 1e-9)
        rows = []
        for w in [*self.inventory.workers, *e2e.by_address(self.inventory.others)]:
            rows.append(
                {
                    "worker": w.name + ("" if w.managed else " (joined by hand)"),
                    "network": ", ".join(w.addresses) or "-",
                    "ip": ", ".join(w.addresses.values()) or "-",
                    "tasks": per.get(w.name, 0),
                    "rate": per.get(w.name, 0) / elapsed,
                }
            )
        return rows

    def as_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "ok": self.ok,
            "checks": self.checks,
            "summary": self.rows(),
            "report": self.report,
            "restarts": self.restarts,
            "status": self.inventory.as_status() if self.inventory else None,
        }


def job_overrides(cluster: Cluster, given: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The job fields ``given`` (None: not given), checked against the ``Job`` model merged
    with the file's job: ``(overrides, warnings)``. Raises ``ValueError`` naming each bad
    field by its flag, and nothing is run. For the CLI's flags and the dashboard's form."""
    from distproc.spec import job_fields
    from pydantic import ValidationError

    from .model.checks import job_time_warnings
    from .model.topology import Job

    flags = {f.name: f.flag for f in job_fields()}
    unknown = sorted(set(given) - set(flags))
    if unknown:
        raise ValueError(f"unknown job fields: {', '.join(unknown)}")
    overrides = {name: value for name, value in given.items() if value is not None}
    if overrides.get("kind", cluster.job.kind) != cluster.job.kind and "size" not in overrides:
        overrides["size"] = None  # a size belongs to its kind: --kind io without --size
        # would otherwise inherit a cpu job's 10000 as 10 s per io task
    try:
        job = Job.model_validate({**cluster.job.model_dump(), **overrides})
    except ValidationError as exc:
        raise ValueError(
            "; ".join(
                f"{flags.get(str(e['loc'][0]), e['loc'][0]) if e['loc'] else 'job'}: {e['msg']}"
                for e in exc.errors()
            )
        ) from None
    warnings = job_time_warnings(cluster.model_copy(update={"job": job}))
    return overrides, [w.message for w in warnings]


class ClusterRun:
    """Operations on one cluster through one backend; progress goes to ``events``."""

    def __init__(
        self,
        cluster: Cluster,
        backend: Backend,
        events: Events,
        config_dir: Path = Path("."),
        source: str | None = None,
    ) -> None:
        self.cluster = cluster
        self.backend = backend
        self.events = events
        self.config_dir = config_dir
        self.source = source  # the cluster file, for the commands we suggest
        self.images: Images | None = None

    # -- bring-up ----------------------------------------------------------------------------
    def up(
        self, run_job: bool = True, ready_timeout: float = 90.0, job_timeout: float = 900.0
    ) -> Outcome:
        """Check resources against the engine, build, sweep leftovers, create networks,
        master and workers, wait, run the job.

        Raises ``ConfigError`` (nothing created) for resources the engine cannot give; an
        error while creating removes what this run created before it propagates, so the
        next ``up`` starts clean. A failed check keeps the cluster, to be looked at.
        """
        c, ev = self.cluster, self.events
        errors, warnings = resource_problems(c, self.backend.engine_limits())
        for w in warnings:
            ev.warn(str(w))
        if errors:
            raise ConfigError(errors)
        keyfile = ensure_authkey(c, self.config_dir)
        ev.step("preparing images")
        self.images = self.backend.build_images(c, ev)
        removed = self.backend.sweep(c.name, ev, keep_data=True)  # a kept journal is replayed
        if removed:
            ev.info(f"removed {plural(removed, 'object')} left by an earlier run of {c.name!r}")
        run = secrets.token_hex(4)
        try:
            self.backend.create(c, run, self.images, keyfile, ev)
        except BaseException:  # an engine refusal, or Ctrl-C: leave nothing half made
            self._roll_back(run)
            raise
        outcome = Outcome(run=run)
        outcome.checks.append(self.wait_ready(ready_timeout))
        if run_job and not c.total_workers:
            ev.warn("no workers: no job is run (join one by hand, then `orchestrate job`)")
            run_job = False
        if outcome.ok and run_job:
            outcome.absorb(self.job(timeout=job_timeout))
            outcome.checks.append(self.isolation(run, outcome.inventory))
        outcome.inventory = outcome.inventory or self.backend.inventory(c.name)
        return outcome

    def _roll_back(self, run: str) -> None:
        """Remove what run ``run`` created; a failure here is a warning, so that the error
        that caused the roll-back is the one the user sees."""
        try:
            removed = self.backend.sweep(self.cluster.name, self.events, run=run)
        except OrchestrateError as exc:
            self.events.warn(f"rolling back run {run} failed: {exc}")
            return
        self.events.warn(f"up failed: removed {plural(removed, 'object')} this run ({run}) created")

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        """Until every worker that can reach the master has connected with the authkey
        (bounded). A worker that shares no network with the master is known not to connect
        before any waiting: it fails at once, with that reason, and nobody waits for it."""
        expected = self.backend.worker_names(self.cluster)
        off = {g.name for g in self.cluster.groups_off_master_networks()}
        cut = {
            name: "shares no network with the master"
            for slot, name in zip(self.cluster.iter_workers(), expected, strict=True)
            if slot.group.name in off
        }
        waiting = [n for n in expected if n not in cut]
        self.events.step(
            f"waiting for {plural(len(waiting), 'worker')} to connect "
            f"(at most {timeout:.0f}s)"
            + (f"; {len(cut)} cannot: no network shared with the master" if cut else "")
        )
        t0 = time.monotonic()
        connected: set[str] = set()
        while waiting:
            status = self._status()
            if status is not None:
                connected = {
                    w["identity"].get("name", "") for w in status["workers"] if w["connected"]
                } & set(waiting)
            self.events.progress("ready", len(connected), len(waiting), "workers connected")
            if len(connected) == len(waiting) or time.monotonic() - t0 > timeout:
                break
            time.sleep(READY_POLL)
        return e2e.workers_connected(expected, connected, time.monotonic() - t0, cut)

    def _status(self) -> dict[str, Any] | None:
        res = self.backend.control(self.cluster.name, ["status", "--connect-timeout", "2"])
        if res.exit_code != 0:
            return None
        return json.loads(res.stdout)

    def running(self) -> Inventory:
        """The inventory of a cluster whose master runs; else ``ClusterNotRunning``, naming
        what to do. Read before any header, so a command on a down cluster says so first."""
        inv = self.backend.inventory(self.cluster.name)
        if inv.master is None or inv.master.state != "running":
            why = "" if inv.master is None else f" (its master is {inv.master.state})"
            up = f"`orchestrate up -f {self.source or 'FILE'}`"
            if self.source is None or Path(self.source).name == "cluster.yaml":
                up = f"`make cluster-up` or {up}"  # make's cluster is cluster.yaml's
            raise ClusterNotRunning(
                f"cluster {self.cluster.name!r} is not running{why}: start it with {up}"
            )
        return inv

    # -- jobs --------------------------------------------------------------------------------
    def job(
        self,
        overrides: dict[str, Any] | None = None,
        timeout: float = 900.0,
        attach: str | None = None,
    ) -> Outcome:
        """Run a job on the running cluster (or, with ``attach``, the job of that id already
        there), follow it through restarts of the master (``follow``), and check its report.

        Every field of the spec goes on the command line, even at its default: the master
        container never fills one in on its own.
        """
        spec = {**self.cluster.job.spec(), **(overrides or {})}
        before = self.running()
        follower = JobFollower(self.cluster, self.backend, self.events, self._on_job_line)
        try:
            if attach is not None:
                self.events.step(f"following job {attach}")
                followed = follower.attach(attach, timeout)
            else:
                self.events.step(
                    f"running the job: {plural(spec['tasks'], spec['kind'] + ' task')} "
                    f"({spec['protocol']})"
                )
                argv = ["submit", "--progress", "json", "--timeout", str(timeout)]
                followed = follower.run([*argv, *spec_argv(spec)], timeout)
        except KeyboardInterrupt:  # don't leave the job running on the master
            self._cancel(follower.job_id)
            raise
        except JobLost as exc:
            raise JobFailed(str(exc)) from None
        res = followed.result
        if not has_report(res):
            raise JobFailed(
                f"the job did not run (exit {res.exit_code}): {_last_lines(res.stderr)}"
                + self._still_running()
            )
        report = parse_report(res.stdout)
        save_report(self.cluster.name, report.to_dict())
        # a worker that stopped during the job keeps the addresses its results came from
        inv = self.backend.inventory(self.cluster.name).remember(before)
        checks = e2e.job_checks(report, inv, self.backend.worker_names(self.cluster))
        return Outcome(checks, report, inv, run=inv.run or before.run, job_ran=True,
                       restarts=followed.restarts)  # fmt: skip

    def _still_running(self) -> str:
        """After a refused submit: a job the master still runs (one resumed from a journal
        kept by ``down --keep-data``, or left by a ``job`` that was interrupted), named with
        how to follow it. Asked only on this path, so a job that runs costs no extra call."""
        try:
            res = self.backend.control(self.cluster.name, ["status"])
            job = json.loads(res.stdout).get("job") if res.exit_code == 0 else None
        except (OrchestrateError, ValueError, AttributeError):
            return ""
        if not job or job.get("finished"):
            return ""
        return (
            f"; job {job['job']} ({job['done']}/{job['total']} done) still runs on the master: "
            f"`orchestrate job --attach {job['job']}` follows it to its report (Ctrl-C there "
            "cancels it)"
        )

    def _cancel(self, job_id: str | None) -> None:
        """After Ctrl-C: cancel the job. With its master gone (Ctrl-C while ``job`` waits
        for it), the job stays in the journal, and a master that comes back resumes it: say
        so, and how to follow it, rather than an engine error in place of the interrupt."""
        self.events.warn("interrupted: cancelling the job on the master")
        try:
            self.backend.control(self.cluster.name, ["cancel", *_job_arg(job_id)])
        except EngineError as exc:
            if job_id is None:
                self.events.warn(f"could not cancel the job: {exc}")
                return
            self.events.warn(
                f"could not cancel job {job_id}: {exc}; a master that comes back with its "
                f"journal resumes it: `orchestrate job --attach {job_id}` follows it (Ctrl-C "
                "there cancels it)"
            )

    def _on_job_line(self, line: str) -> None:
        if line.startswith('{"progress"'):
            p = json.loads(line)["progress"]
            self.events.progress("job", p["done"], p["total"], "tasks done")
        elif line.strip():
            self.events.detail(line)

    def isolation(self, run: str, inv: Inventory | None) -> dict[str, Any]:
        """The probe: from a network the master is not on, its port must be unreachable."""
        if inv is None or inv.master is None or self.images is None:
            return e2e.check("isolation", "skipped", "no master to probe")
        port = self.cluster.master.port
        targets = [f"{ip}:{port}" for ip in inv.master.addresses.values()]
        if not targets:
            return e2e.check("isolation", "skipped", "the master has no address to probe")
        self.events.step(f"probing the master from a network it is not on ({', '.join(targets)})")
        return e2e.isolation(self.backend.probe(self.cluster, self.images, targets, run))

    def check(self, ready_timeout: float = 30.0) -> Outcome:
        """The end-to-end checks on the running cluster, against its last job."""
        running = self.running()
        # probe with the image the cluster runs (building here could make a different one)
        self.images = Images(running.images.get("master", ""), running.images.get("worker", ""))
        out = Outcome(run=running.run)
        out.checks.append(self.wait_ready(ready_timeout))
        res = self.backend.control(self.cluster.name, ["report"])
        if res.exit_code in (0, 3) and res.stdout.strip():
            self.events.step("checking the last job's report against the engine")
            report = parse_report(res.stdout)
            inv = self.backend.inventory(self.cluster.name)
            out.absorb(
                Outcome(
                    e2e.job_checks(report, inv, self.backend.worker_names(self.cluster)),
                    report,
                    inv,
                )
            )
        else:
            self.events.info("no job has run on this cluster yet: running the one in the file")
            out.absorb(self.job())
        out.checks.append(self.isolation(out.run or secrets.token_hex(4), out.inventory))
        return out

    # -- teardown --------------------------------------------------------------------------
    def down(self, keep_data: bool = False) -> int:
        """Remove every labelled object of the cluster (but its journal, with ``keep_data``);
        idempotent."""
        return self.backend.sweep(self.cluster.name, self.events, keep_data=keep_data)

    def run(self, test: Callable[[ClusterRun], T], **up_args: Any) -> T:
        """Start, test, stop: ``up`` (no job), ``test(self)``, then ``down`` whatever happens.

        Raises ``OrchestrateError`` (after the ``down``) if the workers never got ready.
        """
        try:
            outcome = self.up(run_job=False, **up_args)
            if not outcome.ok:
                failed = "; ".join(c["evidence"] for c in outcome.checks if not c["ok"])
                raise OrchestrateError(f"cluster {self.cluster.name!r} not ready: {failed}")
            return test(self)
        finally:
            self.down()


def _job_arg(job_id: str | None) -> list[str]:
    return ["--job", job_id] if job_id else []


def _last_lines(text: str, n: int = 5) -> str:
    lines = [line for line in text.strip().splitlines() if not line.startswith('{"progress"')]
    return " | ".join(lines[-n:]) or "no output"
