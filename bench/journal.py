"""The journal's cost (issue 9, item 6), side by side in one run.

Three masters on loopback, each with 2 worker processes of its own: no journal, a journal
with ``synchronous=NORMAL`` (the default) and one with ``FULL``. Their jobs interleave (off,
normal, full, off, ...), so whatever else the shared machine does falls on all three alike.
Each job is a million tiny ``square`` tasks, leased, batch 256: its rate end to end (the
client's connect to the report in hand, as ``submit`` does) beside the master's clock, the
master's share of a core, and the journal's own figures from ``status`` (commits, exchanges
per commit, seconds in commits). The journals are files on the machine's disk (``/tmp`` is
ext4 here, as the engine's volumes are), so ``FULL`` pays real fsyncs.

In this process (``in_process``), without sockets: what one exchange of 256 results costs the
broker with the journal off and on, how much of it is under the broker's lock (the capture:
a list swap and a few small copies) and how much is the commit outside it.

CLI: ``python -m bench.journal [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.ours import Cluster, _square

MODES = ("off", "normal", "full")
N_TASKS = 1_000_000
N_QUICK = 200_000
WORKERS = 2
BATCH = 256
N_EXCHANGES = 2000  # in-process exchanges of 256 results per measurement


def _master_args(mode: str, folder: Path) -> tuple[str, ...]:
    if mode == "off":
        return ()
    return ("--journal", str(folder / f"journal-{mode}.db"), "--journal-sync", mode)


@contextlib.contextmanager
def _clusters(log: Callable[[str], None]) -> Iterator[dict[str, Cluster]]:
    """A master and its workers per mode, all running at once; stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
        out: dict[str, Cluster] = {}
        try:
            for mode in MODES:
                folder = Path(tmp) / mode
                folder.mkdir()
                cl = out[mode] = Cluster(folder, master_args=_master_args(mode, folder))
                cl.start_master()
                cl.start_workers(WORKERS, "--protocol", "leased")
                log(f"{mode}: master on port {cl.port}, {WORKERS} workers")
            yield out
        finally:
            for cl in out.values():
                cl.stop()


def _journal(cl: Cluster) -> dict[str, Any]:
    return cl.broker().status()["journal"]


def side_by_side(tasks: int = N_TASKS, repeat: int = 3,
                 log: Callable[[str], None] = lambda _s: None) -> dict[str, Any]:  # fmt: skip
    """Jobs of ``tasks`` tiny tasks on each mode's cluster, interleaved, ``repeat`` rounds."""
    spec = _square(tasks, "leased", BATCH)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    with _clusters(log) as clusters:
        for cl in clusters.values():  # warm-up: connections open, pages touched
            cl.job(_square(min(tasks, 20_000), "leased", BATCH))
        for r in range(repeat):
            for mode, cl in clusters.items():
                before = _journal(cl)
                rep, e2e = cl.job(spec)
                after = _journal(cl)
                run = {
                    "e2e_rate": tasks / e2e,
                    "rate": float(rep["throughput"]),
                    "master_cores": round(cl.last_master_cores, 3),
                    "foreign_cores": round(cl.last_foreign_cores, 3),
                    "machine_cores": round(cl.last_machine_cores, 3),
                    "commits": after["commits"] - before["commits"],
                    "changes": after["changes"] - before["changes"],
                    "commit_seconds": after["commit_seconds"] - before["commit_seconds"],
                    "longest_commit_seconds": after["longest_commit_seconds"],
                    "journal_bytes": after["bytes"],
                    "end_to_end_seconds": e2e,
                }
                runs[mode].append(run)
                log(
                    f"round {r + 1}/{repeat} {mode}: {run['e2e_rate']:,.0f} tasks/s end to end, "
                    f"master {run['master_cores']:.0%} of a core, {run['commits']} commits"
                )
    return summarize(runs, tasks)


def summarize(runs: dict[str, list[dict[str, Any]]], tasks: int) -> dict[str, Any]:
    """Medians per mode, and each journal's rate over the rate without one."""
    modes: dict[str, Any] = {}
    for mode, rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        commits = med["commits"] or 0
        modes[mode] = {
            **med,
            "e2e_runs": [r["e2e_rate"] for r in rs],
            "foreign_cores_max": max(r["foreign_cores"] for r in rs),
            "exchanges_per_commit": med["changes"] / commits if commits else None,
            "commit_ms": 1e3 * med["commit_seconds"] / commits if commits else None,
            "commit_share": med["commit_seconds"] / med["end_to_end_seconds"],
        }
    off = modes["off"]["e2e_rate"]
    ratios = {f"{m}/off": modes[m]["e2e_rate"] / off for m in MODES if m != "off"}
    return {"tasks": tasks, "workers": WORKERS, "batch": BATCH, "modes": modes,
            "ratios": ratios}  # fmt: skip


class TimedLock:
    """The broker's lock, timed: how long it is held, in all (``Condition`` works over it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.held = 0.0
        self._since = 0.0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._lock.acquire(blocking, timeout)
        if got:
            self._since = time.perf_counter()
        return got

    def release(self) -> None:
        self.held += time.perf_counter() - self._since
        self._lock.release()

    __enter__ = acquire

    def __exit__(self, *_exc: object) -> None:
        self.release()


def in_process(exchanges: int = N_EXCHANGES) -> dict[str, Any]:
    """One worker's exchanges of 256 results on a broker in this process, journal off and on:
    microseconds per exchange in all, how long the broker's lock was held (what the journal
    adds there is the capture of what changed), and the time in commits (outside the lock)."""
    from distproc import wire
    from distproc.broker import Broker
    from distproc.journal import open_journal

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
        for mode in MODES:
            journal = None if mode == "off" else open_journal(f"{tmp}/{mode}.db", mode)
            b = Broker(journal=journal)
            job_id = b.submit({"kind": "square", "tasks": exchanges * BATCH, "batch": BATCH})
            b.hello("w", {"name": "w"})
            reply = b.exchange("w", None, [], 0.0, BATCH, 0.0)
            lock = b.lock = TimedLock()  # type: ignore[assignment]
            b.changed = threading.Condition(lock)  # type: ignore[arg-type]
            t0 = time.perf_counter()
            while reply is not None:
                _job, lid, _, kind, ranges, source = reply
                values = [p * p for p in wire.payloads_of(kind, ranges, source)]
                reply = b.exchange("w", job_id, [(lid, ranges, values, [])], 0.0, BATCH, 0.0)
            took = time.perf_counter() - t0
            assert b.report(job_id)["ok"]
            commits = journal.stats.seconds if journal is not None else 0.0
            out[mode] = {"us_per_exchange": 1e6 * took / exchanges,
                         "us_under_lock": 1e6 * lock.held / exchanges,
                         "us_in_commits": 1e6 * commits / exchanges}  # fmt: skip
            if journal is not None:
                journal.close()
    for mode in MODES[1:]:
        m = out[mode]
        m["us_under_lock_added"] = m["us_under_lock"] - out["off"]["us_under_lock"]
    return out


def run(quick: bool = False, log: Callable[[str], None] = lambda _s: None) -> dict[str, Any]:
    res = side_by_side(N_QUICK if quick else N_TASKS, 1 if quick else 3, log)
    res["in_process"] = in_process(N_EXCHANGES // (4 if quick else 1))
    res["bound"] = bound(res)
    return res


def bound(res: dict[str, Any]) -> str:
    """What bounds the rate with the journal on, from the figures of this run: the master's
    core (the journal's Python work beside the exchanges', under one GIL), or the journal's
    thread, when it writes nearly all the time (an fsync per commit) and exchanges wait."""
    normal, full, off = (res["modes"][m] for m in ("normal", "full", "off"))
    return (
        f"normal: the master's core {normal['master_cores']:.0%} busy (off: "
        f"{off['master_cores']:.0%}); the journal's thread writing {normal['commit_share']:.0%}"
        f" of the time ({normal['commit_ms']:.2f} ms a commit, "
        f"{normal['exchanges_per_commit']:.1f} exchanges each); full: the journal's thread "
        f"writing {full['commit_share']:.0%} of the time ({full['commit_ms']:.2f} ms a commit, "
        f"an fsync of the WAL each, {full['exchanges_per_commit']:.1f} exchanges each)"
    )


def table(res: dict[str, Any]) -> str:
    head = ("journal", "end to end/s", "master clock/s", "of off", "master core", "commits",
            "exch./commit", "ms/commit", "other")  # fmt: skip
    rows = [head]
    off = res["modes"]["off"]["e2e_rate"]
    for mode, m in res["modes"].items():
        rows.append((
            mode, f"{m['e2e_rate']:,.0f}", f"{m['rate']:,.0f}", f"{m['e2e_rate'] / off:.0%}",
            f"{m['master_cores']:.0%}", f"{m['commits']:.0f}",
            "-" if m["exchanges_per_commit"] is None else f"{m['exchanges_per_commit']:.1f}",
            "-" if m["commit_ms"] is None else f"{m['commit_ms']:.2f}",
            f"{m['foreign_cores_max']:.2f}",
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    cells = (enumerate(zip(r, widths, strict=True)) for r in rows)
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in row) for row in cells]
    ip = res["in_process"]
    per = [
        f"{m} {ip[m]['us_per_exchange']:.0f} us, the lock held {ip[m]['us_under_lock']:.1f} us "
        f"({ip[m]['us_under_lock_added']:+.1f}), {ip[m]['us_in_commits']:.0f} us in the commit"
        for m in MODES[1:]
    ]
    lines.append(
        f"{res['tasks']:,} tiny tasks, {res['workers']} workers, batch {res['batch']}; in "
        f"this process, per exchange of 256: off {ip['off']['us_per_exchange']:.0f} us, the "
        f"lock held {ip['off']['us_under_lock']:.1f} us; " + "; ".join(per)
    )
    lines.append(f"what bounds it: {res['bound']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.journal", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"{N_QUICK:,} tasks, one round")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = run(args.quick, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(json.dumps(res, indent=2) if args.json else table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
