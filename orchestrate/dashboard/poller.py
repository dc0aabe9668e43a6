"""``Poller``: one thread that polls the backend for every open page, and the page's actions.

Polling is bounded by construction: the pages never reach the backend. Each open page reads
the last snapshot (``latest``); one thread polls on a fixed period (``period``, 1 s by
default) while at least one page is open or an action runs, and not at all otherwise. Each
poll also reads what ``orchestrate chaos`` appended to its marks file since (``chaos.marks``):
a fault injected and healed is a mark on the chart, whoever ran it. A poll
is one ``Backend.inventory`` (the engine) and, when the master runs, one
``control(["status"])`` (the master): so at most one request a second reaches the master,
whatever the number of pages, plus one ``report`` per job that ended (to check it), and what
the actions themselves run. ``requests`` counts them; the page shows the counts.

Actions (``start_job``, ``check``) run ``ClusterRun`` in a thread of their own, one at a
time; ``cancel`` asks the master at once (a job started from the page then ends with its
report, as after ``orchestrate job`` is interrupted).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..backends.base import Backend, EngineError, ExecResult, Inventory
from ..chaos.marks import MarksTail, marks_path
from ..cluster import ClusterRun, job_overrides, parse_report
from ..model import Cluster, OrchestrateError
from .live import LiveState

DEFAULT_PERIOD = 1.0
STATUS_TIMEOUT = 2  # seconds the status command may wait for the master (--connect-timeout)


class Busy(OrchestrateError):
    """Another action is running: one at a time (the master runs one job at a time too)."""


class DashboardEvents:
    """``Events`` for an action: its steps and progress go into the state the page reads."""

    def __init__(self, poller: Poller) -> None:
        self.poller = poller

    def _say(self, message: str) -> None:
        self.poller.update_action(message=message)

    def step(self, message: str) -> None:
        self._say(message)

    def info(self, message: str) -> None:
        self._say(message)

    def detail(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        self._say(f"warning: {message}")

    def progress(self, key: str, done: int, total: int, label: str = "") -> None:
        pass  # the job's progress comes from the master's status, for every job alike


class Poller:
    """Polls one cluster's backend and keeps its ``LiveState`` (see the module docstring)."""

    def __init__(
        self,
        cluster: Cluster,
        backend: Callable[[], Backend] | Backend,
        source: str = "",
        period: float = DEFAULT_PERIOD,
        config_dir: Path = Path("."),
    ) -> None:
        self.cluster = cluster
        self.source = source
        self.period = period
        self.config_dir = config_dir
        self._make_backend = backend if callable(backend) else (lambda: backend)
        self._backend: Backend | None = None
        self.state: LiveState | None = None
        self.requests: Counter[str] = Counter()  # control() calls by command, and "inventory"
        self.polls = 0
        self.duration = 0.0
        self.clients = 0
        self._lock = threading.Lock()  # the state and the cached snapshot
        self._action = threading.Lock()  # one action at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._latest: tuple[int, str] = (0, "{}")
        self._checked: set[str] = set()  # jobs whose report was read for the checks
        self._thread: threading.Thread | None = None
        self.state = LiveState(cluster, cluster.worker_names(), source)
        #: what `orchestrate chaos` does to this cluster, as marks on the chart (``marks``)
        self._chaos = MarksTail(marks_path(cluster.name))
        self._publish()

    # -- the backend ----------------------------------------------------------------------------
    def backend(self) -> Backend:
        """The backend, made on first use (and again after the engine failed to connect)."""
        if self._backend is None:
            self._backend = self._make_backend()
            assert self.state is not None
            self.state.expected = self._backend.worker_names(self.cluster)
        return self._backend

    def _control(self, argv: list[str]) -> ExecResult:
        self.requests[argv[0]] += 1
        return self.backend().control(self.cluster.name, argv)

    def _inventory(self) -> Inventory:
        self.requests["inventory"] += 1
        return self.backend().inventory(self.cluster.name)

    # -- one poll -------------------------------------------------------------------------------
    def poll_once(self) -> None:
        """Inventory, then status if the master runs, then the checks of a job that ended."""
        t0 = time.monotonic()
        state = self.state
        assert state is not None
        try:
            inv = self._inventory()
        except (EngineError, OSError) as exc:
            self._backend = None  # reconnect next time
            with self._lock:
                state.observe(None, None, engine_error=str(exc))
            self._done(t0)
            return
        status, why = None, ""
        if inv.master is not None and inv.master.state == "running":
            status, why = self._status()
        with self._lock:
            state.observe(inv, status, master_error=why)
            for m in self._chaos.new():
                state.mark(m["kind"], m["label"], t=m["t"])
        if status is not None:
            self._check_ended_job(status, inv)
        self._done(t0)

    def _status(self) -> tuple[dict[str, Any] | None, str]:
        try:
            res = self._control(["status", "--connect-timeout", str(STATUS_TIMEOUT)])
        except EngineError as exc:
            return None, str(exc)
        if res.exit_code != 0:
            lines = res.stderr.strip().splitlines()
            return None, lines[-1] if lines else f"exit {res.exit_code}"
        try:
            return json.loads(res.stdout), ""
        except ValueError:
            return None, "its status is not JSON"

    def _check_ended_job(self, status: dict[str, Any], inv: Inventory) -> None:
        """A job that ended and that no action checked: read its report once, and check it
        against the engine's inventory, as ``orchestrate check`` does."""
        from .. import checks as e2e

        job = status.get("job") or {}
        job_id = job.get("job", "")
        state = self.state
        assert state is not None
        if not job.get("finished") or job_id in self._checked or state.checks["job"] == job_id:
            return
        if self._action.locked():
            return  # the action running checks it itself
        self._checked.add(job_id)
        try:
            res = self._control(["report", "--job", job_id])
            if res.exit_code not in (0, 3):
                raise OrchestrateError(res.stderr.strip() or f"exit {res.exit_code}")
            report = parse_report(res.stdout)
            items = e2e.job_checks(report, inv, state.expected)
        except OrchestrateError as exc:
            items = [e2e.check("report", "fail", f"the report of job {job_id}: {exc}")]
        with self._lock:
            state.set_checks(items, job_id, f"the report of job {job_id}")

    def _done(self, t0: float) -> None:
        self.polls += 1
        self.duration = time.monotonic() - t0
        self._publish()

    def _publish(self) -> None:
        """Serialise the snapshot once for every page that reads it."""
        state = self.state
        assert state is not None
        with self._lock:
            snap = state.snapshot()
            snap["poll"] = {
                "period": self.period,
                "duration": round(self.duration, 3),
                "polls": self.polls,
                "requests": dict(self.requests),
                "clients": self.clients,
            }
            self._latest = (state.version, json.dumps(snap, default=str))

    def latest(self) -> tuple[int, str]:
        """(version, JSON text) of the last snapshot: what every page is sent."""
        return self._latest

    def mark(self, kind: str, label: str) -> None:
        """A mark on the throughput chart: the hook for chaos scenarios (``LiveState``)."""
        assert self.state is not None
        with self._lock:
            self.state.mark(kind, label)
        self._publish()

    def update_action(self, **fields: Any) -> None:
        assert self.state is not None
        with self._lock:
            self.state.set_action(**fields)
        self._publish()

    # -- the thread -----------------------------------------------------------------------------
    def subscribe(self) -> None:
        """A page opened: poll (at once, then every period) while any is open."""
        with self._lock:
            self.clients += 1
        self._wake.set()

    def unsubscribe(self) -> None:
        with self._lock:
            self.clients -= 1

    def start(self) -> Poller:
        self._thread = threading.Thread(target=self._run, name="dashboard-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.clients > 0 or self._action.locked():
                started = time.monotonic()
                try:
                    self.poll_once()
                except Exception as exc:  # never let the thread die: say it on the page
                    self.update_action(error=f"poll failed: {type(exc).__name__}: {exc}")
                self._wake.wait(max(0.0, self.period - (time.monotonic() - started)))
            else:
                self._wake.wait()
            self._wake.clear()

    # -- actions --------------------------------------------------------------------------------
    def start_job(self, given: dict[str, Any]) -> dict[str, Any]:
        """Start a job with these fields (the form's: kind, tasks, size, protocol; None or
        absent means the file's): checked first, and refused with nothing started."""
        overrides, warnings = job_overrides(self.cluster, given)
        self._spawn("job", lambda run: run.job(overrides), "starting the job")
        return {"started": "job", "overrides": overrides, "warnings": warnings}

    def check(self) -> dict[str, Any]:
        """Run the e2e checks (``orchestrate check``): readiness, the last job, isolation."""
        self._spawn("check", lambda run: run.check(), "running the checks")
        return {"started": "check"}

    def cancel(self) -> dict[str, Any]:
        """End the running job now (its unfinished tasks are buried as dead)."""
        job = (self.state.job if self.state else None) or {}
        if not job or job.get("finished"):
            raise OrchestrateError("no job is running")
        res = self._control(["cancel", "--job", job["job"]])
        if res.exit_code != 0:
            raise OrchestrateError(f"cancel failed: {res.stderr.strip() or res.exit_code}")
        self.mark("job", f"job {job['job']} cancelled from the dashboard")
        self._wake.set()
        return {"cancelled": job["job"]}

    def _spawn(self, name: str, work: Callable[[ClusterRun], Any], message: str) -> None:
        if not self._action.acquire(blocking=False):
            raise Busy(f"{self.state.action['name'] if self.state else 'an action'} is running")
        self.update_action(name=name, running=True, message=message, error="")

        def run() -> None:
            try:
                runner = ClusterRun(
                    self.cluster, self.backend(), DashboardEvents(self), self.config_dir,
                    self.source or None,
                )  # fmt: skip
                outcome = work(runner)
                job = (outcome.report or {}).get("job", {}).get("id", "")
                with self._lock:
                    assert self.state is not None
                    self.state.set_checks(outcome.checks, job, f"`{name}` from the dashboard")
                self._checked.add(job)
                failed = outcome.failed()
                verdict = f"failed checks: {', '.join(failed)}" if failed else "every check passed"
                self.update_action(running=False, message=f"{name}: {verdict}")
            except OrchestrateError as exc:
                self.update_action(running=False, message="", error=f"{name}: {exc}")
            except Exception as exc:  # shown, not lost in a thread
                self.update_action(running=False, error=f"{name}: {type(exc).__name__}: {exc}")
            finally:
                self._action.release()
                self._wake.set()

        threading.Thread(target=run, name=f"dashboard-{name}", daemon=True).start()
        self._wake.set()
