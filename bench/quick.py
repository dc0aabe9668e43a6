"""Regression guard: leased vs classic on one loopback master, in well under a minute.

``python -m bench.quick`` starts a master and worker processes on 127.0.0.1 (no Docker),
measures tiny ``square`` tasks with the leased protocol (20000 tasks, batch 256) and the
classic one (one ``task.get`` + one ``result.put`` per task; 3000 tasks suffice for its
~10k tasks/s), 1 and 2 workers, median of 5, using the master's own throughput (first
task leased or got -> last result), each beside its rate end to end (connect, submit, wait,
report: what a user waits for); and a 200,000-task job on 2 workers, whose end to end
amortizes the client's fixed costs. It prints the key ratios; the LAST line is always
``leased/classic: <ratio>x`` (1 worker each, both measured in this run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import ours

N_LEASED = ours.N_TINY
N_CLASSIC = ours.N_CLASSIC_QUICK
N_RT = 2000
N_LARGE = 200_000  # tasks of the 2-worker job measured end to end
REPEAT = 5  # median of 5: on a VM, where the scheduler puts master and worker moves the rate


def run(
    n_leased: int = N_LEASED,
    n_classic: int = N_CLASSIC,
    repeat: int = REPEAT,
    workers: tuple[int, ...] = (1, 2),
    batch: int = 256,
    roundtrips: int = N_RT,
    large: int = N_LARGE,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure; returns ``ours.tiny``'s result plus ``headline`` (leased/classic, 1 worker)
    and ``limit_fraction`` (leased rate / (empty-exchange round trips/s * batch))."""
    t0 = time.perf_counter()
    res = ours.tiny(n_leased, repeat, workers, batch, classic_n=n_classic,
                    roundtrips=roundtrips, million=large, scale=workers[-1:], log=log)  # fmt: skip
    w = workers[0]
    res["headline"] = res["ratios"][f"leased/classic {w}w"]
    res["headline_workers"] = w
    rts = {r["name"]: r["rate"] for r in res["roundtrips"]}
    rt = rts.get("our master: empty exchange")
    res["limit_fraction"] = res["leased"][w]["rate"] / (rt * batch) if rt else None
    res["wall_seconds"] = round(time.perf_counter() - t0, 2)
    return res


def lines(res: dict[str, Any]) -> list[str]:
    """The printed summary; the last line is ``leased/classic: <ratio>x``."""
    out = []
    for protocol in ("leased", "million", "classic"):
        for r in res[protocol].values():
            out.append(
                f"{r['name']}: {r['rate']:,.0f} tasks/s (median of {len(r['runs'])}, "
                f"{r['tasks']} tasks); end to end {r['e2e_rate']:,.0f} "
                f"({r['e2e_over_master']:.0%} of the master's clock)"
            )
    for r in res["roundtrips"]:
        out.append(f"{r['name']}: {r['rate']:,.0f} round trips/s")
    if res.get("limit_fraction") is not None:
        out.append(f"leased / (exchange round trips * batch): {res['limit_fraction']:.1%}")
    for k, v in res["ratios"].items():
        if v is not None and k != f"leased/classic {res['headline_workers']}w":
            out.append(f"{k}: {v:.2f}x")
    out.append(ours.foreign_note(ours.rows(res)))
    out.append(f"wall: {res['wall_seconds']:.1f}s")
    out.append(f"leased/classic: {res['headline']:.1f}x")
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(prog="python -m bench.quick", description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=N_LEASED, help="leased tasks per run")
    ap.add_argument("--classic-tasks", type=int, default=N_CLASSIC, help="classic tasks per run")
    ap.add_argument("--repeat", type=int, default=REPEAT)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json", action="store_true", help="also print the raw results (stderr)")
    args = ap.parse_args(argv)
    res = run(
        args.tasks,
        args.classic_tasks,
        args.repeat,
        tuple(args.workers),
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    if args.json:
        print(json.dumps(res, indent=2, default=str), file=sys.stderr)
    print("\n".join(lines(res)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
