"""The master's memory per million tasks: what a job costs while it runs, and what it leaves.

A fresh master and two inline workers on loopback run square jobs of growing size; the
master's resident set (``VmRSS``) and its high-water mark (``VmHWM``) are read from /proc
before and after each job. The figure of merit is the peak above the idle master, per
million tasks of the largest job; the end-to-end rate (seen by the submitting client) stands
beside the master's own rate. Before the per-task bytes, three 1M-task jobs left the master at
149, 274 and 392 MB resident. The same jobs time the steps that must not grow with the
job: building it (``submit``), handing out its first lease, and building its report; and the
step that does, in C over bytes: the master packing its per-task bytes as the job ends.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import ours

SIZES = (1_000_000, 1_000_000, 1_000_000, 10_000_000)
QUICK_SIZES = (1_000_000, 3_000_000)


def _mib(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def run(quick: bool, log: Callable[[str], None] = print) -> dict[str, Any]:
    sizes = QUICK_SIZES if quick else SIZES
    rows: list[dict[str, Any]] = []
    with ours.cluster() as cl, cl.workers(2):
        assert cl.master is not None
        pid = cl.master.pid
        cl.job({"kind": "square", "tasks": 1000})  # connections open, code paths warm
        idle = _mib(pid, "VmRSS")
        for n in sizes:
            rep, secs = cl.job({"kind": "square", "tasks": n, "batch": 4096})
            t = cl.last_timing
            beyond = t["wait"] - rep["elapsed_seconds"]  # first lease, and the end (packing)
            row = {
                "tasks": n,
                "rss_after_mib": round(_mib(pid, "VmRSS"), 1),
                "peak_mib": round(_mib(pid, "VmHWM"), 1),
                "rate": rep["throughput"],
                "e2e_rate": round(n / secs, 1),
                "submit_ms": round(1e3 * t["submit"], 2),
                "first_lease_ms": round(1e3 * rep["waited_seconds"], 2),
                "wait_beyond_ms": round(1e3 * beyond, 2),
                "report_ms": round(1e3 * t["report"], 2),
            }
            rows.append(row)
            log(
                f"{n:,} tasks: master RSS {row['rss_after_mib']} MiB after, peak "
                f"{row['peak_mib']} MiB; {row['rate']:,.0f}/s master, "
                f"{row['e2e_rate']:,.0f}/s end to end"
            )
    largest = max(sizes)
    peak = max(r["peak_mib"] for r in rows)
    return {
        "idle_mib": round(idle, 1),
        "rows": rows,
        "peak_above_idle_per_million_mib": round((peak - idle) / (largest / 1e6), 2),
        "left_after_all_mib": round(rows[-1]["rss_after_mib"] - idle, 1),
    }


def table(res: dict[str, Any]) -> str:
    lines = [f"idle master: {res['idle_mib']} MiB resident"]
    lines += [
        f"  {r['tasks']:>10,} tasks: peak {r['peak_mib']:6.1f} MiB, after {r['rss_after_mib']:6.1f}"
        f" MiB; {r['rate']:>9,.0f}/s master, {r['e2e_rate']:>9,.0f}/s end to end; submit "
        f"{r['submit_ms']:.1f} ms, first lease {r['first_lease_ms']:.1f} ms, wait beyond the "
        f"master's clock {r['wait_beyond_ms']:.1f} ms, report {r['report_ms']:.1f} ms"
        for r in res["rows"]
    ]
    lines.append(
        f"master peak RSS per million tasks: {res['peak_above_idle_per_million_mib']} MiB "
        f"(above idle, largest job); left after all jobs: {res['left_after_all_mib']} MiB"
    )
    return "\n".join(lines)
