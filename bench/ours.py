"""Our queue program on loopback: the classic protocol vs. the leased one, on the same master.

Master and workers run as separate ``python -m distproc`` processes on 127.0.0.1. The bench
process is only the control client: it waits until the workers are connected (``status``),
then submits each job with ``distproc.submit.run_job`` (what ``python -m distproc submit``
calls) and reads the job's report.

Timing: ``rate`` is the master's own measurement, the report's ``throughput`` (tasks /
``elapsed_seconds``, from the first task leased -- classic: the first ``task.get`` -- to the
last result accepted). ``e2e_rate`` times the same job end to end from the client (connect,
submit, payload generation on the master, wait, report): it includes fixed costs that a
20000-task job of tiny tasks does not amortize.

CLI: ``python -m bench.ours [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
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
N_CLASSIC_QUICK = 3000  # classic runs ~5k tasks/s: enough for a stable rate in quick mode
BATCHES = (64, 256, 1024)
JOB_TIMEOUT = 300.0
N_RT = 20000  # control round trips for our own transport floor


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


class Cluster:
    """One master process plus the worker processes started on it, all on loopback."""

    def __init__(self, tmp: Path, log_level: str = "WARNING") -> None:
        self.tmp = tmp
        self.log_level = log_level
        self.keyfile = tmp / "authkey"
        self.keyfile.write_text(secrets.token_hex(16))
        self.keyfile.chmod(0o600)
        self.key = self.keyfile.read_bytes().strip()
        self.port = 0
        self.master: subprocess.Popen[bytes] | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

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
            self.master = self._spawn("master", "master", "--host", LOOPBACK, "--port", str(self.port))
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while self.master.poll() is None and time.monotonic() < deadline:
                try:
                    broker(connect(self.address, self.key, 0.5)).ping()
                    return
                except Exception:
                    time.sleep(0.05)
            stop_process(self.master)
        raise RuntimeError(f"the master did not start:\n{_tail(self.logs[self.master.pid])}")

    def broker(self) -> Any:
        """A fresh broker proxy (``connect`` drops cached connections, so never keep one)."""
        from distproc.client import broker, connect

        return broker(connect(self.address, self.key, 10.0))

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
        """SIGTERM (the worker drains and says bye), then kill; only these processes."""
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            stop_process(p)

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

        t0 = time.perf_counter()
        rep = run_job(self.address, self.key, spec, timeout=JOB_TIMEOUT, connect_timeout=10.0)
        e2e = time.perf_counter() - t0
        if not rep["ok"]:
            bad = [c for c in rep["checks"] if not c["ok"]]
            raise RuntimeError(f"job {rep['job']['id']} failed its checks: {bad}")
        return rep, e2e

    def stop(self) -> None:
        """Stop every process this cluster started (workers first, then the master)."""
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.procs):
            stop_process(p)


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

    def once() -> float:
        rep, secs = cl.job(spec)
        e2e.append(secs)
        reports.append(rep)
        return float(rep["elapsed_seconds"])

    res = measure(name, spec["tasks"], once, repeat, **extra)
    res["e2e_rate"] = statistics.median(spec["tasks"] / s for s in e2e)
    res["e2e_runs"] = [spec["tasks"] / s for s in e2e]
    res["tasks_per_worker"] = [
        [w["tasks"] for w in rep["workers"]] for rep in reports
    ]  # evidence that every worker took part
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
            f"leased, {workers} worker{'s' * (workers > 1)}, batch {batch}",
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
        ("our master: empty exchange", lambda: b.exchange(wid, None, [], [], 0.0, [], 0, 0.0)),
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
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Leased vs classic on ONE master, for each worker count; optional batch sweep.

    Leased runs go first: after a classic job, idle leased workers poll every 0.5 s instead
    of waiting on the master, which would only delay the start (not the measured window).
    Returns ``{"leased": {w: res}, "classic": {w: res}, "sweep": [...], "roundtrips": [...],
    "ratios": {...}}``.
    """
    say = log or (lambda _s: None)
    out: dict[str, Any] = {"leased": {}, "classic": {}, "sweep": [], "roundtrips": []}
    with cluster() as cl:
        for w in workers:
            r = out["leased"][w] = leased_tiny(cl, w, n, repeat, batch)
            say(f"  {r['name']}: {r['rate']:,.0f} tasks/s (e2e {r['e2e_rate']:,.0f})")
        for b in batches:
            for w in workers:
                if b == batch:
                    continue
                r = leased_tiny(cl, w, n, repeat, b)
                out["sweep"].append(r)
                say(f"  {r['name']}: {r['rate']:,.0f} tasks/s")
        if roundtrips:
            out["roundtrips"] = control_roundtrips(cl, roundtrips, repeat)
            for r in out["roundtrips"]:
                say(f"  {r['name']}: {r['rate']:,.0f} round trips/s")
        for w in workers:
            r = out["classic"][w] = classic_tiny(cl, w, classic_n or n, repeat)
            say(f"  {r['name']}: {r['rate']:,.0f} tasks/s (e2e {r['e2e_rate']:,.0f})")
    ratios: dict[str, float | None] = {}
    for w in workers:
        ratios[f"leased/classic {w}w"] = ratio(out["leased"][w], out["classic"][w])
    if 1 in workers and 2 in workers:
        ratios["leased 2w/1w"] = ratio(out["leased"][2], out["leased"][1])
        ratios["classic 2w/1w"] = ratio(out["classic"][2], out["classic"][1])
    out["ratios"] = ratios
    return out


def rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Every measurement of a ``tiny`` result as a flat list (for tables and JSON)."""
    return [
        *res["leased"].values(),
        *res["sweep"],
        *res["classic"].values(),
        *res["roundtrips"],
    ]


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    from bench.peers import format_table

    ap = argparse.ArgumentParser(prog="python -m bench.ours", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer classic tasks, one run each")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = tiny(
        repeat=1 if args.quick else 3,
        classic_n=N_CLASSIC_QUICK if args.quick else None,
        batches=() if args.quick else BATCHES,
        roundtrips=2000 if args.quick else N_RT,
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    if args.json:
        print(json.dumps(res, indent=2, default=str))
    else:
        print(format_table(rows(res)))
        for k, v in res["ratios"].items():
            print(f"{k}: {v:.1f}x" if v is not None else f"{k}: -")
    return 0


if __name__ == "__main__":
    sys.exit(main())
