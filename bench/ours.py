"""Our queue program on loopback: the classic protocol vs. the leased one, on the same master.

Master and workers run as separate ``python -m distproc`` processes on 127.0.0.1. The bench
process is only the control client: it waits until the workers are connected (``status``),
then submits each job with ``distproc.submit.run_job`` (what ``python -m distproc submit``
calls) and reads the job's report.

Timing: ``rate`` is the master's own measurement, the report's ``throughput`` (tasks /
``elapsed_seconds``, from the first task leased -- classic: the first ``task.get`` -- to the
last result accepted). ``e2e_rate`` is what a user waits for: the same job end to end, from
the client's connect to the report in hand (``run_job``'s ``timing``: connect, submit, wait,
report). Its fixed costs (about 5 ms here, most of it the five authenticated connections the
stdlib's proxies open) are a quarter of a 20,000-task job at 1M tasks/s, so the headline
rows run a million tasks. ``master_cores`` is the master's CPU time over the run's wall time:
near 1.0, its one core (the GIL) is the bound.

CLI: ``python -m bench.ours [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import LOOPBACK, STARTUP_TIMEOUT, free_port, measure, stop_process, wait_until

N_TINY = 20000  # tiny square tasks per timed run (the N)
N_MILLION = 1_000_000  # the headline: a million tiny tasks, end to end
SCALE = (1, 2, 4, 8)  # workers on loopback for the million-task rows
SATURATED = 0.9  # of one core: past this the master's core is the bound
N_CLASSIC_QUICK = 3000  # classic runs ~5k tasks/s: enough for a stable rate in quick mode
BATCHES = (64, 256, 1024, 4096)
JOB_TIMEOUT = 300.0
N_RT = 20000  # control round trips for our own transport floor
FOREIGN_WARN = 0.2  # cores used by other processes above which a run is flagged
STOP_TIMEOUT = 15.0  # a worker drains (finishes or releases what it holds) before exiting


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def warn(msg: str) -> None:
    """A warning line on stderr (cleanup problems are evidence, not noise)."""
    print(f"bench: warning: {msg}", file=sys.stderr, flush=True)


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from ``/proc/<pid>/task/*/children``)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError), open(f"/proc/{p}/task/{task}/children") as f:
                    kids = [int(c) for c in f.read().split()]
                    out += kids
                    todo += kids
    return out


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


_HZ = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _HZ
    except (OSError, IndexError, ValueError):
        return 0.0


def _machine_busy() -> float:
    """CPU seconds the whole machine has spent not idle, over every CPU."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:8]]
    return (sum(v) - v[3] - v[4]) / _HZ  # minus idle and iowait


class CpuProbe:
    """How many cores OTHER processes kept busy while we measured (another job on the
    machine skews every rate here: on 2 cores, even a fraction of a core shows), and how
    much of a core each of ours used."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.t0 = time.monotonic()
        self.machine0 = _machine_busy()
        self.cpu0 = {p: _cpu_seconds(p) for p in pids}

    def _wall(self) -> float:
        return max(time.monotonic() - self.t0, 1e-9)

    def foreign_cores(self) -> float:
        ours = sum(_cpu_seconds(p) - self.cpu0[p] for p in self.pids)
        return max(0.0, (_machine_busy() - self.machine0 - ours) / self._wall())

    def cores(self, pid: int) -> float:
        """The cores ``pid`` used (CPU seconds per wall second; ticks of 10 ms)."""
        return (_cpu_seconds(pid) - self.cpu0[pid]) / self._wall()

    def machine_cores(self) -> float:
        """The cores every process on the machine kept busy, ours and others'."""
        return (_machine_busy() - self.machine0) / self._wall()


class Cluster:
    """One master process plus the worker processes started on it, all on loopback."""

    def __init__(self, tmp: Path, log_level: str = "WARNING", master_args: tuple[str, ...] = ()
                 ) -> None:  # fmt: skip
        self.tmp = tmp
        self.log_level = log_level
        self.master_args = master_args  # more flags for the master (bench.journal: --journal)
        self.keyfile = tmp / "authkey"
        self.keyfile.write_text(secrets.token_hex(16))
        self.keyfile.chmod(0o600)
        self.key = self.keyfile.read_bytes().strip()
        self.port = 0
        self.master: subprocess.Popen[bytes] | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}
        self._broker: Any = None
        self.last_foreign_cores = 0.0  # see CpuProbe
        self.last_master_cores = 0.0
        self.last_machine_cores = 0.0
        self.last_timing: dict[str, float] = {}  # run_job's steps, seconds

    @property
    def address(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ, DISTPROC_AUTHKEY_FILE=str(self.keyfile), PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)
        return env

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{name}-{len(self.procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "distproc", "--log-level", self.log_level, *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env(),
            )
        self.procs.append(proc)
        self.logs[proc.pid] = log
        return proc

    def start_master(self) -> None:
        """Start the master on a free port and wait until it answers a ``ping``."""
        from distproc.client import broker, connect

        for _attempt in range(3):  # a picked free port can be taken before the master binds
            self.port = free_port()
            self.master = self._spawn(
                "master", "master", "--host", LOOPBACK, "--port", str(self.port), *self.master_args
            )
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while self.master.poll() is None and time.monotonic() < deadline:
                try:
                    self._broker = broker(connect(self.address, self.key, 0.5))
                    self._broker.ping()
                    return
                except Exception:
                    time.sleep(0.05)
            stop_process(self.master)
        raise RuntimeError(f"the master did not start:\n{_tail(self.logs[self.master.pid])}")

    def broker(self) -> Any:
        """A broker proxy; a new one if ``run_job`` closed the last one's connection.

        (``distproc.client.connect`` drops every cached connection to the address.)
        """
        from distproc.client import LINK_ERRORS, broker, connect

        if self._broker is not None:
            try:
                self._broker.ping()
                return self._broker
            except LINK_ERRORS:
                self._broker = None
        self._broker = broker(connect(self.address, self.key, 10.0))
        return self._broker

    def start_workers(self, n: int, *args: str) -> list[subprocess.Popen[bytes]]:
        """Start ``n`` worker processes and wait until the master lists them as connected."""
        procs = [
            self._spawn(
                "worker",
                "worker",
                "--master",
                f"{LOOPBACK}:{self.port}",
                "--name",
                f"bench-{i}",
                "--connect-timeout",
                "20",
                *args,
            )
            for i in range(n)
        ]
        pids = {p.pid for p in procs}

        def connected() -> bool:
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"worker exited early:\n{_tail(self.logs[p.pid])}")
            st = self.broker().status()
            live = {w["identity"].get("pid") for w in st["workers"] if w["connected"]}
            return pids <= live

        wait_until(connected, STARTUP_TIMEOUT, 0.05, f"{n} workers to connect")
        return procs

    def stop_workers(self, procs: list[subprocess.Popen[bytes]]) -> None:
        """SIGTERM (the worker drains and says bye), then kill; only these processes.

        A worker's pool processes ignore SIGTERM (the worker stops them itself); if a worker
        had to be killed, they would outlive it, so any left are killed here by pid.
        """
        pool = {p.pid: descendants(p.pid) for p in procs}
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                warn(f"worker {p.pid} still running {STOP_TIMEOUT:.0f}s after SIGTERM: killed")
                stop_process(p)
            for child in pool[p.pid]:
                if _alive(child):
                    warn(f"pool process {child} of worker {p.pid} outlived it: killed")
                    with contextlib.suppress(OSError):
                        os.kill(child, signal.SIGKILL)

    @contextlib.contextmanager
    def workers(self, n: int, *args: str) -> Iterator[list[subprocess.Popen[bytes]]]:
        procs: list[subprocess.Popen[bytes]] = []
        try:
            procs = self.start_workers(n, *args)
            yield procs
        finally:
            self.stop_workers(procs)

    def job(self, spec: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """Run one job to the end; returns (report, client-side end-to-end seconds)."""
        from distproc.submit import run_job

        live = [p.pid for p in self.procs if p.poll() is None]
        probe = CpuProbe([os.getpid(), *live, *(c for p in live for c in descendants(p))])
        timing: dict[str, float] = {}
        rep = run_job(self.address, self.key, spec, timeout=JOB_TIMEOUT, connect_timeout=10.0,
                      timing=timing)  # fmt: skip
        e2e = timing["end_to_end"]
        self.last_foreign_cores = probe.foreign_cores()
        self.last_master_cores = probe.cores(self.master.pid) if self.master else 0.0
        self.last_machine_cores = probe.machine_cores()
        self.last_timing = timing
        if not rep["ok"]:
            bad = [c for c in rep["checks"] if not c["ok"]]
            raise RuntimeError(f"job {rep['job']['id']} failed its checks: {bad}")
        return rep, e2e

    def stop(self) -> None:
        """Stop every process this cluster started (workers first, then the master)."""
        self.stop_workers([p for p in self.procs if p is not self.master])
        stop_process(self.master)


@contextlib.contextmanager
def cluster(log_level: str = "WARNING") -> Iterator[Cluster]:
    """A running master in a temporary directory; every process is stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="bench-distproc-") as tmp:
        cl = Cluster(Path(tmp), log_level)
        try:
            cl.start_master()
            yield cl
        finally:
            cl.stop()


def job_rate(
    cl: Cluster,
    name: str,
    spec: dict[str, Any],
    repeat: int = 3,
    warmup: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Median of ``repeat`` jobs of ``spec`` on the connected workers (rate = master's figure).

    ``warmup`` (a smaller spec) runs once first, untimed: it opens the workers' connections
    and makes the protocol of the current job the one measured.
    """
    if warmup is not None:
        cl.job(warmup)
    e2e: list[float] = []
    reports: list[dict[str, Any]] = []
    timings: list[dict[str, float]] = []
    foreign: list[float] = []
    master: list[float] = []
    machine: list[float] = []

    def once() -> float:
        rep, secs = cl.job(spec)
        e2e.append(secs)
        reports.append(rep)
        foreign.append(round(cl.last_foreign_cores, 3))
        master.append(round(cl.last_master_cores, 3))
        machine.append(round(cl.last_machine_cores, 3))
        timings.append({**cl.last_timing, "first_lease": rep["waited_seconds"],
                        "master_clock": rep["elapsed_seconds"]})  # fmt: skip
        return float(rep["elapsed_seconds"])

    res = measure(name, spec["tasks"], once, repeat, **extra)
    res["e2e_rate"] = statistics.median(spec["tasks"] / s for s in e2e)
    res["e2e_runs"] = [spec["tasks"] / s for s in e2e]
    # per run: end to end over the master's clock (both of the same job)
    res["e2e_over_master"] = statistics.median(
        float(r["elapsed_seconds"]) / s for r, s in zip(reports, e2e, strict=True)
    )
    res["master_cores"] = master  # the master's CPU over each run's wall time
    res["machine_cores"] = machine  # every process's, ours and others'
    res["timing_ms"] = {k: round(1e3 * statistics.median(t[k] for t in timings), 3)
                        for k in timings[0]}  # fmt: skip
    # evidence that every worker took part, and the time spent in the task functions
    res["tasks_per_worker"] = [[w["tasks"] for w in rep["workers"]] for rep in reports]
    res["busy_seconds"] = [sum(w["busy_seconds"] or 0.0 for w in rep["workers"]) for rep in reports]
    res["foreign_cores"] = foreign  # cores other processes used during each run
    return res


def _square(n: int, protocol: str, batch: int) -> dict[str, Any]:
    return {"kind": "square", "tasks": n, "protocol": protocol, "batch": batch}


def leased_tiny(
    cl: Cluster, workers: int, n: int = N_TINY, repeat: int = 3, batch: int = 256
) -> dict[str, Any]:
    """Leased protocol, ``workers`` default (inline) workers, ``n`` tiny square tasks."""
    with cl.workers(workers, "--protocol", "leased"):
        return job_rate(
            cl,
            f"leased, {workers} worker{'s' * (workers > 1)}, batch {batch}"
            + (f", {n:,} tasks" if n != N_TINY else ""),
            _square(n, "leased", batch),
            repeat,
            warmup=_square(min(n, 2000), "leased", batch),
            protocol="leased",
            workers=workers,
            batch=batch,
        )


def classic_tiny(cl: Cluster, workers: int, n: int = N_TINY, repeat: int = 3) -> dict[str, Any]:
    """Classic protocol (one ``task.get`` + one ``result.put`` per task), same master."""
    with cl.workers(workers, "--protocol", "classic"):
        return job_rate(
            cl,
            f"classic, {workers} worker{'s' * (workers > 1)}",
            _square(n, "classic", 1),
            repeat,
            warmup=_square(min(n, 200), "classic", 1),
            protocol="classic",
            workers=workers,
            batch=1,
        )


def control_roundtrips(cl: Cluster, n: int = N_RT, repeat: int = 3) -> list[dict[str, Any]]:
    """Round trips/s to our own master: ``ping`` and an empty ``exchange`` (ack 0, want 0).

    The same transport and server as a worker's exchange, with nothing to account: the floor
    of one protocol round trip.
    """
    b = cl.broker()
    wid = "bench-rt"
    b.hello(wid, {"name": "bench-rt"})
    out = []
    for name, call in (
        ("our master: ping", lambda: b.ping()),
        ("our master: empty exchange", lambda: b.exchange(wid, None, [], 0.0, 0, 0.0)),
    ):

        def once(call: Callable[[], Any] = call) -> float:
            for _ in range(200):
                call()
            t0 = time.perf_counter()
            for _ in range(n):
                call()
            return time.perf_counter() - t0

        out.append(measure(name, n, once, repeat))
    b.bye(wid)
    return out


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    """``a.rate / b.rate`` when both were measured."""
    if not a or not b or "rate" not in a or "rate" not in b or not b["rate"]:
        return None
    return a["rate"] / b["rate"]


def tiny(
    n: int = N_TINY,
    repeat: int = 3,
    workers: tuple[int, ...] = (1, 2),
    batch: int = 256,
    classic_n: int | None = None,
    batches: tuple[int, ...] = (),
    roundtrips: int = 0,
    million: int = 0,
    scale: tuple[int, ...] = (),
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Leased vs classic on ONE master, for each worker count; optional extras.

    Extras: the other ``batches`` (in ``sweep``); ``million`` tasks per job for each worker
    count of ``scale`` (in ``million``: the end-to-end headline, and where the master's core
    saturates); ``roundtrips``: the floor of one call to our master (``control_roundtrips``).

    Leased runs go first: after a classic job, idle leased workers poll every 0.5 s instead
    of waiting on the master, which would only delay the start (not the measured window).
    Returns ``{"leased": {w: res}, "classic": {w: res}, "million": {w: res}, "sweep": [...],
    "roundtrips": [...], "ratios": {...}}``.
    """
    say = log or (lambda _s: None)
    out: dict[str, Any] = {"leased": {}, "classic": {}, "million": {}, "sweep": [],
                           "roundtrips": []}  # fmt: skip
    with cluster() as cl:
        for w in workers:
            r = out["leased"][w] = leased_tiny(cl, w, n, repeat, batch)
            say(f"  {_said(r)}")
        for w in scale if million else ():
            r = out["million"][w] = leased_tiny(cl, w, million, repeat, batch)
            say(f"  {_said(r)}, master {max(r['master_cores']):.0%} of a core")
        for b in batches:
            for w in workers:
                if b != batch:  # on the million-task job if there is one: a steadier rate
                    out["sweep"].append(r := leased_tiny(cl, w, million or n, repeat, b))
                    say(f"  {_said(r)}")
        if roundtrips:
            out["roundtrips"] = control_roundtrips(cl, roundtrips, repeat)
            for r in out["roundtrips"]:
                say(f"  {r['name']}: {r['rate']:,.0f} round trips/s")
        for w in workers:
            r = out["classic"][w] = classic_tiny(cl, w, classic_n or n, repeat)
            say(f"  {_said(r)}")
    ratios: dict[str, float | None] = {}
    for w in workers:
        ratios[f"leased/classic {w}w"] = ratio(out["leased"][w], out["classic"][w])
    if 1 in workers and 2 in workers:
        ratios["leased 2w/1w"] = ratio(out["leased"][2], out["leased"][1])
        ratios["classic 2w/1w"] = ratio(out["classic"][2], out["classic"][1])
    if 1 in out["million"] and 2 in out["million"]:
        one, two = out["million"][1], out["million"][2]
        ratios["leased 2w/1w, end to end, million"] = two["e2e_rate"] / one["e2e_rate"]
    out["ratios"] = ratios
    return out


def _said(r: dict[str, Any]) -> str:
    return f"{r['name']}: {r['rate']:,.0f} tasks/s (end to end {r['e2e_rate']:,.0f})"


def saturation(res: dict[str, Any]) -> str:
    """What bounds the million-task rows: the master's one core, the machine's cores (ours
    and other processes' together), or neither (then it is latency: round trips)."""
    rows_ = res.get("million") or {}
    if not rows_:
        return "master core: not measured (no million-task rows)"
    cores = len(os.sched_getaffinity(0))
    shown = "; ".join(
        f"{w} worker{'s' * (w > 1)}: master {max(r['master_cores']):.0%} of a core, machine "
        f"{max(r['machine_cores']) / cores:.0%} of its {cores}"
        for w, r in rows_.items()
    )
    master = [w for w, r in rows_.items() if max(r["master_cores"]) >= SATURATED]
    machine = [w for w, r in rows_.items() if max(r["machine_cores"]) >= SATURATED * cores]
    if master:
        verdict = f"the master's core saturates from {min(master)} workers on"
    elif machine:
        verdict = (f"the machine's {cores} cores were all busy from {min(machine)} workers on "
                   "(see other): they, not the master's core, bound the rate")  # fmt: skip
    else:
        verdict = "neither the master's core nor the machine saturated: round trips bound it"
    return f"{verdict} ({shown})"


def limit(res: dict[str, Any], roundtrips: dict[str, float]) -> list[dict[str, Any]]:
    """How close each leased measurement is to the transport limit.

    One exchange carries ``batch`` tasks, so the limit is ``roundtrip_rate * batch`` tasks/s;
    ``fraction`` = rate / limit, and ``tasks_per_roundtrip`` = rate / roundtrip_rate (what a
    batch of ``batch`` would give if the master and workers did no per-task work).
    """
    out = []
    for r in [*res["leased"].values(), *res.get("million", {}).values(), *res["sweep"]]:
        for rt_name, rt in roundtrips.items():
            out.append(
                {
                    "name": r["name"],
                    "roundtrip": rt_name,
                    "rate": r["rate"],
                    "batch": r["batch"],
                    "roundtrip_rate": rt,
                    "limit": rt * r["batch"],
                    "fraction": r["rate"] / (rt * r["batch"]),
                    "tasks_per_roundtrip": r["rate"] / rt,
                }
            )
    return out


def format_limit(rows_: list[dict[str, Any]]) -> str:
    """Plain-text table of ``limit`` rows."""
    head = ("measurement", "round trip", "tasks/s", "rt/s", "limit", "of limit", "tasks/rt")
    table = [head] + [
        (
            r["name"],
            r["roundtrip"],
            f"{r['rate']:,.0f}",
            f"{r['roundtrip_rate']:,.0f}",
            f"{r['limit']:,.0f}",
            f"{r['fraction']:.1%}",
            f"{r['tasks_per_roundtrip']:.1f}",
        )
        for r in rows_
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    )


def format_tiny(res: dict[str, Any]) -> str:
    """The tiny-task table plus the ratios."""
    lines = [format_rows(rows(res))]
    lines += [f"{k}: {v:.2f}x" if v is not None else f"{k}: -" for k, v in res["ratios"].items()]
    lines.append(saturation(res))
    lines.append(timing_line(res))
    lines.append(foreign_note(rows(res)))
    return "\n".join(lines)


def format_rows(results: list[dict[str, Any]]) -> str:
    """Every row with the master's clock and end to end side by side (round trips apart)."""
    head = ("measurement", "tasks", "master clock/s", "end to end/s", "e2e/master",
            "master core", "other")  # fmt: skip
    table = [head]
    for r in results:
        if "e2e_rate" not in r:
            table.append((r["name"], f"{r['tasks']:,}", f"{r['rate']:,.0f} round trips",
                          "", "", "", ""))  # fmt: skip
            continue
        short = r["seconds"] < 0.2  # 10 ms ticks: a core's share of a short run is noise
        table.append((
            r["name"], f"{r['tasks']:,}", f"{r['rate']:,.0f}", f"{r['e2e_rate']:,.0f}",
            f"{r['e2e_over_master']:.0%}", "-" if short else f"{max(r['master_cores']):.0%}",
            f"{max(r.get('foreign_cores') or [0.0]):.2f}",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    cells = (enumerate(zip(row, widths, strict=True)) for row in table)
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in row)
                     for row in cells)  # fmt: skip


def timing_line(res: dict[str, Any]) -> str:
    """Where a job's end-to-end time goes, for the largest 2-worker (or 1-worker) row: the
    client's steps, and inside its wait the master's clock (from the job built)."""
    rows_ = res.get("million") or res["leased"]
    r = rows_.get(2) or rows_.get(1)
    if r is None:
        return ""
    t = r["timing_ms"]
    return (f"{r['name']}, medians: client: connect {t['connect']:.1f} ms, submit (the job "
            f"built) {t['submit']:.1f} ms, wait {t['wait']:.1f} ms, report {t['report']:.1f} "
            f"ms, end to end {t['end_to_end']:.1f} ms; master: first lease {t['first_lease']:.1f}"
            f" ms after the job was built, then its clock {t['master_clock']:.1f} ms")  # fmt: skip


def foreign_note(results: list[dict[str, Any]]) -> str:
    """One line: how busy other processes kept the machine during these measurements."""
    worst = max((max(r.get("foreign_cores") or [0.0]) for r in results), default=0.0)
    flag = " -- rates are skewed (another job was running)" if worst > FOREIGN_WARN else ""
    return f"other processes used up to {worst:.2f} cores during a run{flag}"


def rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Every measurement of a ``tiny`` result as a flat list (for tables and JSON)."""
    return [*res["leased"].values(), *res.get("million", {}).values(), *res["sweep"],
            *res["classic"].values(), *res["roundtrips"]]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(prog="python -m bench.ours", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer classic tasks, one run each")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = tiny(
        repeat=1 if args.quick else 3,
        classic_n=N_CLASSIC_QUICK if args.quick else None,
        batches=() if args.quick else BATCHES,
        roundtrips=2000 if args.quick else N_RT,
        million=N_MILLION // 5 if args.quick else N_MILLION,
        scale=(1, 2) if args.quick else SCALE,
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    if args.json:
        print(json.dumps(res, indent=2, default=str))
    else:
        print(format_tiny(res))
        rts = {r["name"]: r["rate"] for r in res["roundtrips"]}
        if rts:
            print(format_limit(limit(res, rts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
