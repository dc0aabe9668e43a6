"""The full benchmark (``make bench``): ours, peers, the lesson, the limit, containers.

``python -m bench.run [--quick] [--no-peers] [--no-lesson] [--no-journal] [--no-containers]
[--json]``
runs every enabled
section in order, prints progress lines on stderr, writes ``bench/results/<timestamp>.json``
and ``bench/results/latest.json`` plus PNG plots in ``bench/results/``, and prints a table
per section (or the JSON with ``--json``). Exit 1 if a section failed (the others still run).

Sections are plain entries of ``SECTIONS``: a name, a predicate on the parsed arguments, a
function of the ``Context`` (which holds the results of the sections before it) returning a
JSON-ready result, and a table formatter. A new section is one more ``Section(...)``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import journal, lesson, memory, ours, peers, targets
from bench.common import REPO_ROOT

RESULTS_DIR = REPO_ROOT / "bench" / "results"


def log(msg: str) -> None:
    """A plain progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Context:
    """What a section gets: the arguments, where to write, and earlier sections' results."""

    args: argparse.Namespace
    out_dir: Path
    results: dict[str, Any] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)

    @property
    def quick(self) -> bool:
        return bool(self.args.quick)

    def plot_path(self, name: str) -> Path:
        path = self.out_dir / name
        self.plots.append(str(path))
        return path


@dataclass
class Section:
    """One part of the run."""

    name: str
    run: Callable[[Context], Any]
    table: Callable[[Any], str]
    enabled: Callable[[argparse.Namespace], bool] = lambda _args: True


# --------------------------------------------------------------------------- sections


def run_ours(ctx: Context) -> dict[str, Any]:
    """Tiny tasks: leased vs classic on one master, 1 and 2 workers (+ batch sweep)."""
    return ours.tiny(
        repeat=1 if ctx.quick else 3,
        classic_n=ours.N_CLASSIC_QUICK if ctx.quick else ours.N_TINY,
        batches=() if ctx.quick else ours.BATCHES,
        roundtrips=2000 if ctx.quick else ours.N_RT,
        million=ours.N_MILLION // 5 if ctx.quick else ours.N_MILLION,
        scale=(1, 2) if ctx.quick else ours.SCALE,
        log=lambda s: log(s.strip()),
    )


def run_journal(ctx: Context) -> dict[str, Any]:
    """The journal off, on (synchronous normal) and on (full), side by side (bench.journal)."""
    return journal.run(ctx.quick, log=lambda s: log(f"  {s}"))


def run_peers(ctx: Context) -> list[dict[str, Any]]:
    """Dask, RQ and raw transports (bench.peers)."""
    return peers.run_all(ctx.quick, log=lambda s: log(f"  {s}"))


def run_lesson(ctx: Context) -> dict[str, Any]:
    """cpu vs processes/threads, io vs threads; two PNG plots."""
    repeat = 1 if ctx.quick else 3
    cpu = lesson.cpu_scaling(
        tasks=32 if ctx.quick else lesson.CPU_TASKS, repeat=repeat, log=lambda s: log(s.strip())
    )
    threads = (1, 4, 16, 64, 256, 1024) if ctx.quick else (*lesson.IO_THREADS, 128, 256, 512, 1024)
    io = lesson.io_scaling(
        threads=threads,
        waves=15 if ctx.quick else lesson.IO_WAVES,
        repeat=repeat,
        log=lambda s: log(s.strip()),
    )
    res = {"cpu": cpu, "io": io}
    res["plots"] = [
        str(lesson.plot_cpu(cpu, ctx.plot_path("lesson_cpu.png"))),
        str(lesson.plot_io(io, ctx.plot_path("lesson_io.png"))),
    ]
    return res


def run_limit(ctx: Context) -> dict[str, Any]:
    """Our leased rates against small-message round trips/s times the batch size."""
    tiny = ctx.results.get("ours")
    if not isinstance(tiny, dict):
        raise RuntimeError("needs the 'ours' section")
    rts = {r["name"]: r["rate"] for r in tiny["roundtrips"] if "rate" in r}
    found = [
        r
        for r in ctx.results.get("peers") or []
        if r.get("name") == "BaseManager proxy call" and "rate" in r
    ]
    bm = found[0] if found else peers.basemanager_call_roundtrips(2000 if ctx.quick else 20000)
    rts = {"stdlib BaseManager call": bm["rate"], **rts}
    return {"roundtrips": rts, "rows": ours.limit(tiny, rts)}


TRANSPORTS = ("ping-pong", "round trip", "proxy call")


def run_versus(ctx: Context) -> dict[str, Any]:
    """Each peer's rate as a ratio of ours (leased, 1 worker, the same run), end to end as
    the peers are measured (their client's enqueue to their last result)."""
    tiny = ctx.results.get("ours")
    if not isinstance(tiny, dict):
        raise RuntimeError("needs the 'ours' section")
    mine = (tiny.get("million") or tiny["leased"])[1]["e2e_rate"]
    rows = [
        {"name": r["name"], "rate": r["rate"], "ours_over_peer": mine / r["rate"]}
        for r in ctx.results.get("peers") or []
        if "rate" in r and not any(t in r["name"] for t in TRANSPORTS)
    ]
    return {"ours": mine, "rows": rows}


def _versus_table(res: dict[str, Any]) -> str:
    lines = [f"ours (leased, 1 worker, end to end): {res['ours']:,.0f} tasks/s"]
    lines += [
        f"  {r['name']}: {r['rate']:,.0f} tasks/s, ours is {r['ours_over_peer']:,.1f}x"
        for r in res["rows"]
    ]
    return "\n".join(lines)


def run_containers(ctx: Context) -> dict[str, Any]:
    """Across containers on the engine: tiny tasks, and time to ready (bench.containers)."""
    from bench import containers

    problem = containers.engine_problem()
    if problem:
        log(f"  containers: skipped ({problem})")
        return {"skipped": problem, "fix": "start the Docker engine as .ci/run does"}
    return containers.run(ctx.quick, log=lambda s: log(f"  {s}"))


def _containers_table(res: dict[str, Any]) -> str:
    from bench import containers

    return f"skipped: {res['skipped']}" if "skipped" in res else containers.table(res)


def _lesson_table(res: dict[str, Any]) -> str:
    return lesson.format_table(res) + "\nplots: " + ", ".join(res.get("plots", []))


def run_memory(ctx: Context) -> dict[str, Any]:
    """The master's peak RSS per million tasks (bench.memory)."""
    return memory.run(ctx.quick, log=lambda s: log(f"  {s}"))


def run_targets(ctx: Context) -> dict[str, Any]:
    """Every target, met or MISSED, from this run; the rows skipped and how to bring them."""
    return {"targets": targets.judge(ctx.results), "skipped": targets.skipped_rows(ctx.results)}


SECTIONS: list[Section] = [
    Section("ours", run_ours, ours.format_tiny),
    Section("journal", run_journal, journal.table, lambda a: not a.no_journal),
    Section("peers", run_peers, peers.format_table, lambda a: not a.no_peers),
    Section("lesson", run_lesson, _lesson_table, lambda a: not a.no_lesson),
    Section("limit", run_limit, lambda r: ours.format_limit(r["rows"])),
    Section("versus", run_versus, _versus_table, lambda a: not a.no_peers),
    Section("memory", run_memory, memory.table),
    Section("containers", run_containers, _containers_table, lambda a: not a.no_containers),
    Section("targets", run_targets, targets.table),  # last: it judges the others
]


# --------------------------------------------------------------------------- outputs


def plot_tiny(results: dict[str, Any], path: Path) -> Path | None:
    """Bar chart (log scale) of tiny-task rates: ours, classic, peers, transport round trips."""
    bars: list[tuple[str, float, str]] = []
    tiny = results.get("ours")
    if isinstance(tiny, dict):
        for r in ours.rows(tiny):  # end to end, as the peers are measured
            color = "tab:green" if r.get("protocol") == "leased" else "tab:red"
            if r["name"].startswith("our master"):
                color = "tab:grey"
            bars.append((r["name"], r.get("e2e_rate", r["rate"]), color))
    transports = ("ping-pong", "round trip", "proxy call")
    for r in results.get("peers") or []:
        if "rate" in r:
            grey = any(t in r["name"] for t in transports)
            bars.append((r["name"], r["rate"], "tab:grey" if grey else "tab:blue"))
    if not bars:
        return None
    lesson._pyplot()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.32 * len(bars) + 1.2), dpi=110)
    names = [b[0] for b in bars][::-1]
    rates = [b[1] for b in bars][::-1]
    ax.barh(names, rates, color=[b[2] for b in bars][::-1])
    for i, rate in enumerate(rates):
        ax.text(rate, i, f" {rate:,.0f}", va="center", fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("tasks/s (round trips/s for transports), log scale")
    ax.set_title(
        "tiny tasks on loopback, end to end: leased (green), classic (red), peers (blue);\n"
        "round trips/s of the transports (grey)",
        fontsize=9,
    )
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def meta(args: argparse.Namespace) -> dict[str, Any]:
    """Where and how the run happened."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus_available": cpus,
        "loadavg_at_start": os.getloadavg(),
        "args": vars(args),
    }


def run(args: argparse.Namespace, out_dir: Path = RESULTS_DIR) -> dict[str, Any]:
    """Run the enabled sections; write the JSON and plots; return everything."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(args, out_dir)
    doc: dict[str, Any] = {"meta": meta(args), "sections": ctx.results, "errors": {}}
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    loads: dict[str, tuple[float, float, float]] = {}  # other work on the machine skews rates
    for section in SECTIONS:
        if not section.enabled(args):
            log(f"{section.name}: skipped")
            continue
        log(f"{section.name}: running")
        t0 = time.perf_counter()
        try:
            ctx.results[section.name] = section.run(ctx)
        except Exception as exc:  # keep the other sections running
            doc["errors"][section.name] = f"{type(exc).__name__}: {exc}"
            log(f"{section.name}: FAILED: {exc}")
            traceback.print_exc(file=sys.stderr)
        timings[section.name] = round(time.perf_counter() - t0, 1)
        loads[section.name] = os.getloadavg()
        log(f"{section.name}: done in {timings[section.name]}s (load {loads[section.name][0]:.2f})")
    path = plot_tiny(ctx.results, ctx.plot_path("tiny_rates.png"))
    if path is None:
        ctx.plots.pop()
    doc["plots"] = ctx.plots
    doc["meta"]["section_seconds"] = timings
    doc["meta"]["loadavg_after_section"] = loads
    doc["meta"]["wall_seconds"] = round(time.perf_counter() - t_all, 1)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    text = json.dumps(doc, indent=2, default=str)
    (out_dir / f"{stamp}.json").write_text(text + "\n")
    (out_dir / "latest.json").write_text(text + "\n")
    doc["files"] = [str(out_dir / f"{stamp}.json"), str(out_dir / "latest.json")]
    log(f"wrote {out_dir / f'{stamp}.json'} and latest.json in {doc['meta']['wall_seconds']}s")
    return doc


def tables(doc: dict[str, Any]) -> str:
    """One table per section that ran."""
    parts = []
    for section in SECTIONS:
        if section.name in doc["sections"]:
            parts.append(f"== {section.name}\n{section.table(doc['sections'][section.name])}")
        elif section.name in doc["errors"]:
            parts.append(f"== {section.name}\nFAILED: {doc['errors'][section.name]}")
    return "\n\n".join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small n, one run each (~2 min)")
    ap.add_argument("--no-peers", action="store_true", help="skip Dask/RQ/transport peers")
    ap.add_argument("--no-lesson", action="store_true", help="skip the cpu/io lesson")
    ap.add_argument("--no-journal", action="store_true", help="skip the journal's cost")
    ap.add_argument(
        "--no-containers",
        action="store_true",
        help="skip the benchmarks across containers (they need a Docker engine)",
    )
    ap.add_argument("--json", action="store_true", help="print the JSON instead of tables")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    args = parse_args(argv)
    doc = run(args)
    print(json.dumps(doc, indent=2, default=str) if args.json else tables(doc))
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
