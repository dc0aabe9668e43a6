"""Benchmarks across containers on the real engine: tiny tasks, and time to ready.

- Tiny tasks across containers: the classic one-get-one-put pattern against the leased
  protocol, on the same master, with 1 and 2 worker containers on two networks, and the
  default topology's four (2 + 2 on two networks, 0.5 CPU each, as in cluster.yaml). Each
  rate is the master's own (its report) beside the job end to end, as the ``submit`` client
  in the master's container timed it (connect to report; ``--progress json`` prints it).
- Time to ready: bring up 1, 8, 32 and 64 workers; time from the first container start until
  every worker has connected with the authkey; memory per worker container; and a job on 64
  workers that must lose nothing.

``python -m bench.containers [--quick] [--json]``. Needs a Docker engine; subnets are inside
198.18.200.0/22, away from the default cluster's and the e2e tests'.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from orchestrate.backends import make_backend
from orchestrate.backends.base import Backend
from orchestrate.cluster import ClusterRun
from orchestrate.events import NullEvents
from orchestrate.model import Cluster

ENGINE_LOCK = "/tmp/distproc-engine.lock"  # what `flock` takes around e2e runs here
TINY_TASKS = 200_000  # leased; classic runs a tenth (it does some thousands a second)
#: worker groups (name, count, network) and CPUs per worker, by number of workers
SHAPES: dict[int, tuple[list[tuple[str, int, str]], float]] = {
    1: ([("a", 1, "net-a")], 1.0),
    2: ([("a", 1, "net-a"), ("b", 1, "net-b")], 1.0),
    4: ([("alpha", 2, "net-a"), ("beta", 2, "net-b")], 0.5),  # the default topology's
}


class Timed(NullEvents):
    """Keeps the ``submit`` client's last timing line (``--progress json``)."""

    def __init__(self) -> None:
        self.timing: dict[str, float] = {}

    def detail(self, message: str) -> None:
        if message.startswith('{"timing"'):
            self.timing = json.loads(message)["timing"]


def _cluster(name: str, groups: list[tuple[str, int, str]], cpus: float = 1.0) -> Cluster:
    """A bench cluster: two networks, the master on both, groups as (name, count, network)."""
    return Cluster.model_validate(
        {
            "name": name,
            "networks": [
                {"name": "net-a", "subnet": "198.18.200.0/24"},
                {"name": "net-b", "subnet": "198.18.201.0/24"},
            ],
            "master": {
                "networks": ["net-a", "net-b"],
                "resources": {"cpus": 1.0, "memory": "512m", "pids": 256},
            },
            "workers": [
                {
                    "name": g,
                    "count": n,
                    "networks": [net],
                    "resources": {"cpus": cpus, "memory": "96m", "pids": 64},
                }
                for g, n, net in groups
            ],
            "job": {"kind": "square", "tasks": TINY_TASKS, "batch": 256},
        }
    )


def _median_rate(runner: ClusterRun, events: Timed, overrides: dict[str, Any],
                 repeat: int) -> dict[str, Any]:  # fmt: skip
    rates, e2e = [], []
    for _ in range(repeat):
        events.timing = {}
        outcome = runner.job(overrides)
        rep = outcome.report or {}
        if not outcome.ok:
            raise RuntimeError(f"bench job failed its checks: {outcome.failed()}")
        rates.append(rep["throughput"])
        e2e.append(overrides["tasks"] / events.timing["end_to_end"])
    return {"rate": statistics.median(rates), "runs": rates, "tasks": overrides["tasks"],
            "e2e_rate": statistics.median(e2e), "e2e_runs": e2e}  # fmt: skip


def tiny_tasks(log: Callable[[str], None], repeat: int = 3, tasks: int = TINY_TASKS) -> dict:
    """Classic vs leased across containers, on the same master, for each of ``SHAPES``."""
    backend = make_backend()
    out: dict[str, Any] = {}
    for n, (groups, cpus) in SHAPES.items():
        events = Timed()

        def both(runner: ClusterRun, n: int = n, events: Timed = events) -> dict[str, Any]:
            # leased first: after a classic job our workers notice a leased one only when
            # their classic loop's get() times out (1 s), which end to end would count
            log(f"containers, {n} worker(s): leased")
            leased = _median_rate(runner, events, {"protocol": "leased", "tasks": tasks}, repeat)
            log(f"containers, {n} worker(s): classic")
            classic = _median_rate(runner, events, {"protocol": "classic", "tasks": tasks // 10},
                                   repeat)  # fmt: skip
            return {"classic": classic, "leased": leased, "ratio": leased["rate"] / classic["rate"]}

        runner = ClusterRun(_cluster(f"bench-tiny-{n}", groups, cpus), backend, events)
        out[str(n)] = runner.run(both)  # start, measure, stop
    out["two_over_one_leased"] = out["2"]["leased"]["rate"] / out["1"]["leased"]["rate"]
    return out


def _memory_mib(backend: Backend, cluster: str) -> list[float]:
    """MiB each worker container uses now."""
    workers = {w.name for w in backend.inventory(cluster).workers}
    return [b / 2**20 for name, b in backend.memory_usage(cluster).items() if name in workers]


def time_to_ready(log: Callable[[str], None], sizes: tuple[int, ...] = (1, 8, 32, 64)) -> dict:
    """Seconds from the first container start until every worker is connected."""
    backend = make_backend()
    out: dict[str, Any] = {}
    for n in sizes:
        cluster = _cluster(f"bench-ready-{n}", [("w", n, "net-a")], cpus=0.25)
        runner = ClusterRun(cluster, backend, NullEvents())
        try:
            log(f"time to ready: {n} workers")
            t0 = time.monotonic()
            up = runner.up(run_job=False, ready_timeout=180)
            ready = up.checks[0]
            row: dict[str, Any] = {
                "workers": n,
                "ok": ready["ok"],
                "up_seconds": time.monotonic() - t0,
                "evidence": ready["evidence"],
            }
            mem = _memory_mib(backend, cluster.name)
            row["memory_mib_per_worker"] = statistics.mean(mem) if mem else None
            if n == max(sizes) and ready["ok"]:
                log(f"a job on {n} workers")
                job = runner.job({"kind": "square", "tasks": 100 * n, "batch": 16})
                rep = job.report or {}
                totals = rep.get("totals", {})
                row["job"] = {
                    "tasks": totals.get("tasks"),
                    "ok": totals.get("ok"),
                    "lost": totals.get("tasks", 0) - totals.get("ok", 0),
                    "checks_ok": job.ok,
                    "workers_contributing": sum(1 for r in job.rows() if r["tasks"]),
                }
            out[str(n)] = row
        finally:
            runner.down()
    return out


def engine_problem() -> str | None:
    """Why there is no usable Docker engine, or None."""
    try:
        make_backend()
    except Exception as exc:  # any failure to reach the engine
        return str(exc)
    return None


def run(quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Both parts (smaller in quick mode), holding the engine lock the e2e tests share (the
    clusters here would clash with theirs on the engine, and skew both)."""
    with open(ENGINE_LOCK, "a") as lock:
        log(f"waiting for the engine lock ({ENGINE_LOCK})")
        fcntl.flock(lock, fcntl.LOCK_EX)
        return {
            "tiny_tasks": tiny_tasks(
                log, repeat=1 if quick else 3, tasks=TINY_TASKS // 10 if quick else TINY_TASKS
            ),
            "time_to_ready": time_to_ready(log, (1, 8) if quick else (1, 8, 32, 64)),
        }


def table(res: dict[str, Any]) -> str:
    """Plain-text tables of the results."""
    lines = [
        "across containers, tiny square tasks (master's clock, and end to end):",
        f"  {'workers':>7} {'classic/s':>11} {'e2e':>9} {'leased/s':>11} {'e2e':>11} "
        f"{'e2e/master':>10} {'leased/classic':>15}",
    ]
    tiny = res["tiny_tasks"]
    for n in (k for k in tiny if k.isdigit()):
        r = tiny[n]
        c, le = r["classic"], r["leased"]
        lines.append(
            f"  {n:>7} {c['rate']:>11,.0f} {c['e2e_rate']:>9,.0f} {le['rate']:>11,.0f} "
            f"{le['e2e_rate']:>11,.0f} {le['e2e_rate'] / le['rate']:>10.0%} {r['ratio']:>14.1f}x"
        )
    lines.append(f"  2 workers / 1 worker (leased): {tiny['two_over_one_leased']:.2f}")
    lines.append("time to ready (all workers connected with the authkey):")
    lines.append(f"  {'workers':>7} {'seconds':>8} {'MiB/worker':>11}  job")
    for n, r in res["time_to_ready"].items():
        mem = r.get("memory_mib_per_worker")
        job = r.get("job")
        job_text = (
            f"{job['ok']}/{job['tasks']} ok, {job['lost']} lost, "
            f"{job['workers_contributing']} workers contributed"
            if job
            else ""
        )
        lines.append(
            f"  {n:>7} {r['up_seconds']:>8.1f} {(f'{mem:.1f}' if mem else '-'):>11}  {job_text}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.containers", description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    res = run(args.quick, lambda m: print(f"[bench] {m}", file=sys.stderr, flush=True))
    print(json.dumps(res, indent=2) if args.json else table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
