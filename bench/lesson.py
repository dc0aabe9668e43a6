"""The classic lesson, measured on our queue program: processes for CPU, threads for IO.

- ``cpu`` tasks (count primes by trial division: pure Python, holds the GIL) on ONE worker
  process whose pool has k = 1..4 processes (``--mode processes --concurrency k``), and the
  same with a pool of k threads (``--mode threads --concurrency k``). One worker with a pool
  is how the program runs CPU work in a container; varying the pool keeps the master, the
  connection and the protocol identical across k. Processes scale to the cores available
  (``os.sched_getaffinity``) and no further; threads do not scale at all (the GIL).
  Speed-ups are against the fastest run on one core: normally the worker running the tasks
  itself, inline (``--mode inline``), with no pool and so no IPC. A pool of one process pays
  for that IPC (it did 22.5 tasks/s where one thread did 27.9, in one run here): measured
  against it, 4 processes on 2 cores showed 2.40x. A speed-up above the core count is a
  measurement error, and the table says so.
- ``io`` tasks (each waits ``size`` ms) on one worker with a pool of T threads: throughput
  follows T / size while the waiting dominates, up to where the worker and the master's
  per-task work become the limit.

Every rate is the master's (report ``throughput``: first lease to last result).

CLI: ``python -m bench.lesson [--quick] [--json] [--plots DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.ours import Cluster, cluster, job_rate

CPU_SIZE = 60000  # primes below 60000: ~50 ms per task on this machine
CPU_TASKS = 64
CPU_KS = (1, 2, 3, 4)
IO_MS = 20
IO_THREADS = (1, 2, 4, 8, 16, 32, 64)
IO_WAVES = 40  # tasks per job = waves * threads: every job lasts ~waves * size ideally


def cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _pool_rate(
    cl: Cluster, mode: str, k: int, spec: dict[str, Any], repeat: int, name: str
) -> dict[str, Any]:
    with cl.workers(1, "--protocol", "leased", "--mode", mode, "--concurrency", str(k)):
        warm = dict(spec, tasks=max(2, k))  # starts the pool (and its processes)
        return job_rate(cl, name, spec, repeat, warmup=warm, mode=mode, concurrency=k)


def cpu_scaling(
    ks: tuple[int, ...] = CPU_KS,
    size: int = CPU_SIZE,
    tasks: int = CPU_TASKS,
    repeat: int = 3,
    modes: tuple[str, ...] = ("processes", "threads"),
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """cpu tasks/s for a pool of k processes and of k threads; speed-up and efficiency.

    ``speedup`` is rate(k) / the fastest one-core rate (``out["baseline"]``: inline, no pool,
    unless a pool of one beat it);
    ``efficiency`` is speedup / k and ``core_efficiency`` is speedup / min(k, cores) (1.0 =
    every usable core fully used); ``over_cores`` marks a speed-up above the core count.
    """
    say = log or (lambda _s: None)
    n_cores = cores()
    spec = {"kind": "cpu", "tasks": tasks, "size": size, "batch": 256}
    out: dict[str, Any] = {"cores": n_cores, "size": size, "tasks": tasks}
    with cluster() as cl:
        out["inline"] = _pool_rate(cl, "inline", 1, spec, repeat, "cpu, inline")
        say(f"  cpu, inline: {out['inline']['rate']:,.1f} tasks/s")
        for mode in modes:
            out[mode] = [_pool_rate(cl, mode, k, spec, repeat, f"cpu, {k} {mode}") for k in ks]
    one_core = [out["inline"], *(r for m in modes for r in out[m] if r["concurrency"] == 1)]
    base = out["baseline"] = max(one_core, key=lambda r: r["rate"])
    for r in (r for m in modes for r in out[m]):
        k = r["concurrency"]
        r["speedup"] = r["rate"] / base["rate"]
        r["efficiency"] = r["speedup"] / k
        r["core_efficiency"] = r["speedup"] / min(k, n_cores)
        r["over_cores"] = r["speedup"] > n_cores
        flag = " (above the core count: a measurement error)" if r["over_cores"] else ""
        say(f"  {r['name']}: {r['rate']:,.1f} tasks/s, speed-up {r['speedup']:.2f}x{flag}")
    return out


def io_scaling(
    threads: tuple[int, ...] = IO_THREADS,
    ms: int = IO_MS,
    waves: int = IO_WAVES,
    repeat: int = 3,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """io tasks/s against the thread count; ``ideal`` is threads / (ms / 1000)."""
    say = log or (lambda _s: None)
    series = []
    with cluster() as cl:
        for t in threads:
            spec = {"kind": "io", "tasks": waves * t, "size": ms, "batch": 256}
            r = _pool_rate(cl, "threads", t, spec, repeat, f"io {ms} ms, {t} threads")
            r["ideal"] = t * 1000.0 / ms
            r["fraction_of_ideal"] = r["rate"] / r["ideal"]
            series.append(r)
            say(f"  {r['name']}: {r['rate']:,.0f} tasks/s ({r['fraction_of_ideal']:.0%} of ideal)")
    return {"ms": ms, "waves": waves, "series": series}


def lesson(quick: bool = False, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Both halves of the lesson (``quick``: one run each, smaller cpu job)."""
    repeat = 1 if quick else 3
    cpu = cpu_scaling(tasks=32 if quick else CPU_TASKS, repeat=repeat, log=log)
    io = io_scaling(waves=20 if quick else IO_WAVES, repeat=repeat, log=log)
    return {"cpu": cpu, "io": io}


# --------------------------------------------------------------------------- plots


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_cpu(cpu: dict[str, Any], path: Path) -> Path:
    """Speed-up vs pool size for processes and threads, with the ideal min(k, cores)."""
    plt = _pyplot()
    n_cores = cpu["cores"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ks = [r["concurrency"] for r in cpu.get("processes") or cpu.get("threads") or []]
    if ks:
        ax.plot(ks, [min(k, n_cores) for k in ks], "k--", lw=1, label=f"ideal: min(k, {n_cores})")
    for mode, style, dy in (("processes", "o-", 6), ("threads", "s-", -12)):
        series = cpu.get(mode) or []
        if series and series[0].get("speedup") is not None:
            ax.plot(
                [r["concurrency"] for r in series],
                [r["speedup"] for r in series],
                style,
                label=f"pool of k {mode}",
            )
            for r in series:
                ax.annotate(
                    f"{r['rate']:.1f}/s",
                    (r["concurrency"], r["speedup"]),
                    textcoords="offset points",
                    xytext=(4, dy),
                    fontsize=7,
                )
    ax.axvline(n_cores, color="grey", ls=":", lw=1)
    ax.text(n_cores, 0.15, f" {n_cores} cores", color="grey", fontsize=8)
    ax.set_xticks(ks or [1])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("pool size k (one worker)")
    ax.set_ylabel("speed-up vs the fastest run on one core")
    ax.set_title(
        f"cpu tasks (primes < {cpu['size']}): processes scale to the cores, threads don't (GIL)"
    )
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_io(io: dict[str, Any], path: Path) -> Path:
    """io tasks/s vs threads (log-log), with the ideal threads / size."""
    plt = _pyplot()
    series = io["series"]
    ts = [r["concurrency"] for r in series]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.plot(ts, [r["ideal"] for r in series], "k--", lw=1, label=f"ideal: threads / {io['ms']} ms")
    ax.plot(ts, [r["rate"] for r in series], "o-", label="measured (one worker, T threads)")
    for r in series:
        ax.annotate(
            f"{r['fraction_of_ideal']:.0%}",
            (r["concurrency"], r["rate"]),
            textcoords="offset points",
            xytext=(4, -12),
            fontsize=7,
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(ts, [str(t) for t in ts])
    ax.set_xlabel("threads T")
    ax.set_ylabel("tasks/s")
    ax.set_title(f"io tasks ({io['ms']} ms wait): throughput grows with threads, up to a limit")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def task_ms(r: dict[str, Any]) -> float:
    """Median time one task took where it ran (ms): grows if parallel tasks slow each other."""
    per = sorted(b / r["tasks"] for b in r.get("busy_seconds") or [0.0])
    return 1000.0 * per[len(per) // 2]


def format_table(res: dict[str, Any]) -> str:
    """Plain-text tables of the cpu and io series."""
    cpu = res["cpu"]
    base, inline = cpu["baseline"], cpu["inline"]
    lines = [f"cpu (cores available: {cpu['cores']}; inline {inline['rate']:.1f} tasks/s, "
             f"{task_ms(inline):.1f} ms/task; speed-up against the fastest on one core: "
             f"{base['name']}, {base['rate']:.1f} tasks/s)"]  # fmt: skip
    lines.append(
        f"{'mode':<10} {'k':>2} {'tasks/s':>9} {'speed-up':>9} {'eff':>6} {'core-eff':>9} "
        f"{'ms/task':>8} {'other':>6}"
    )
    flagged = []
    for mode in ("processes", "threads"):
        for r in cpu.get(mode) or []:
            lines.append(
                f"{mode:<10} {r['concurrency']:>2} {r['rate']:>9.1f} {r['speedup']:>8.2f}x "
                f"{r['efficiency']:>6.0%} {r['core_efficiency']:>9.0%} "
                f"{task_ms(r):>8.1f} {_other(r):>6.2f}" + (" !" if r["over_cores"] else "")
            )
            flagged += [r["name"]] if r["over_cores"] else []
    if flagged:
        lines.append(
            f"! speed-up above the {cpu['cores']} cores: a measurement error, not a "
            f"result ({', '.join(flagged)}): the baseline or the run was disturbed"
        )
    lines.append(f"io ({res['io']['ms']} ms per task)")
    lines.append(f"{'threads':>7} {'tasks/s':>9} {'ideal':>8} {'of ideal':>9} {'other':>6}")
    for r in res["io"]["series"]:
        lines.append(
            f"{r['concurrency']:>7} {r['rate']:>9.0f} {r['ideal']:>8.0f} "
            f"{r['fraction_of_ideal']:>9.0%} {_other(r):>6.2f}"
        )
    lines.append("other: most cores that other processes used during a run (should be ~0)")
    return "\n".join(lines)


def _other(r: dict[str, Any]) -> float:
    return max(r.get("foreign_cores") or [0.0])


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(prog="python -m bench.lesson", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one run each, smaller cpu job")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--plots", type=Path, default=None, help="write lesson_cpu/io.png here")
    args = ap.parse_args(argv)
    res = lesson(args.quick, log=lambda s: print(s, file=sys.stderr, flush=True))
    if args.plots:
        args.plots.mkdir(parents=True, exist_ok=True)
        plot_cpu(res["cpu"], args.plots / "lesson_cpu.png")
        plot_io(res["io"], args.plots / "lesson_io.png")
    print(json.dumps(res, indent=2) if args.json else format_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
