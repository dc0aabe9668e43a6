"""The targets, judged from one ``make bench`` run: met, MISSED, or not measured.

Every target is listed whatever the run found, so a missed one is shown as missed, never
left out; and every row a section skipped is listed with the one command that brings it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MET, MISSED, NOT_MEASURED = "met", "MISSED", "not measured"


def _get(results: dict[str, Any], *path: Any) -> Any:
    """``results[p0][p1]...``, or None where a part is missing (a section skipped)."""
    node: Any = results
    for key in path:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _peer(results: dict[str, Any], fragment: str) -> dict[str, Any] | None:
    rows = _get(results, "versus", "rows") or []
    return next((r for r in rows if fragment in r["name"]), None)


def _lowest(rows: Any, key: str) -> float | None:
    return min((row[key] for row in rows), default=None)


def _highest_speedup(cpu: dict[str, Any] | None) -> float | None:
    """The highest cpu speed-up as a fraction of the cores (above 1: impossible)."""
    if not cpu:
        return None
    runs = [r for mode in ("processes", "threads") for r in cpu.get(mode) or []]
    return max((r["speedup"] for r in runs), default=0.0) / cpu["cores"]


@dataclass(frozen=True)
class Target:
    """What must hold, how its value is found in the results, and how it is shown."""

    name: str
    find: Callable[[dict[str, Any]], float | None]
    goal: float
    shown: str
    ceiling: bool = False  # the value must not pass the goal, rather than reach it


_TARGETS: list[tuple[Any, ...]] = [
    (
        "at least 1,000,000 tiny tasks/s end to end, 2 workers on loopback (a million tasks)",
        lambda r: _get(r, "ours", "million", 2, "e2e_rate"),
        1_000_000,
        "{:,.0f}/s",
    ),
    (
        "end to end at least 80% of the master's clock, 2 workers (a million tasks)",
        lambda r: _get(r, "ours", "million", 2, "e2e_over_master"),
        0.8,
        "{:.0%}",
    ),
    (
        "end to end at least 80% of the master's clock, every million-task row (1-8 workers)",
        lambda r: _lowest((_get(r, "ours", "million") or {}).values(), "e2e_over_master"),
        0.8,
        "{:.0%} (the lowest)",
    ),
    (
        "journal on: at least 150,000 tiny tasks/s end to end, 2 workers on loopback "
        "(synchronous normal, a million tasks)",
        lambda r: _get(r, "journal", "modes", "normal", "e2e_rate"),
        150_000,
        "{:,.0f}/s",
    ),
    (
        "journal on: at least half the rate without it, end to end (side by side, same run)",
        lambda r: _get(r, "journal", "ratios", "normal/off"),
        0.5,
        "{:.0%}",
    ),
    (
        "leased at least 50x classic, 1 worker on loopback (master's clock, 20,000 tasks)",
        lambda r: _get(r, "ours", "ratios", "leased/classic 1w"),
        50,
        "{:.0f}x",
    ),
    (
        "2 workers at no less than 1 worker's rate, loopback (end to end, a million tasks)",
        lambda r: _get(r, "ours", "ratios", "leased 2w/1w, end to end, million"),
        1.0,
        "{:.2f}x",
    ),
    (
        "2 workers at no less than 1 worker's rate, across containers (master's clock)",
        lambda r: _get(r, "containers", "tiny_tasks", "two_over_one_leased"),
        1.0,
        "{:.2f}x",
    ),
    (
        "at least 10x Dask chunked (ours end to end, 1 worker)",
        lambda r: (_peer(r, "chunked") or {}).get("ours_over_peer"),
        10,
        "{:.1f}x",
    ),
    (
        "above every peer (ours end to end, 1 worker; the least of the ratios)",
        lambda r: _lowest(_get(r, "versus", "rows") or [], "ours_over_peer"),
        1.0,
        "{:.1f}x",
    ),
    (
        "CPU-bound efficiency at least 0.85 on 2 cores (2 processes, against inline)",
        lambda r: _lowest(
            [x for x in _get(r, "lesson", "cpu", "processes") or [] if x["concurrency"] == 2],
            "core_efficiency",
        ),
        0.85,
        "{:.2f}",
    ),
    (
        "no speed-up above the core count in the lesson (one would be a measurement error)",
        lambda r: _highest_speedup(_get(r, "lesson", "cpu")),
        1.0,
        "{:.2f} of the cores",
        True,
    ),
    (
        "8 workers ready in under 10 s",
        lambda r: _get(r, "containers", "time_to_ready", "8", "up_seconds"),
        10,
        "{:.1f} s",
        True,
    ),
    (
        "64 workers ready in under 60 s",
        lambda r: _get(r, "containers", "time_to_ready", "64", "up_seconds"),
        60,
        "{:.1f} s",
        True,
    ),
]


TARGETS = [Target(*t) for t in _TARGETS]


def judge(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its value and verdict."""
    out = []
    for t in TARGETS:
        value = t.find(results)
        met = value is not None and (value <= t.goal if t.ceiling else value >= t.goal)
        verdict = NOT_MEASURED if value is None else MET if met else MISSED
        text = "-" if value is None else t.shown.format(value)
        out.append({"target": t.name, "value": value, "shown": text, "verdict": verdict})
    return out


def skipped_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """Every row or section that did not run, why, and the command that brings it."""
    rows = [r for r in results.get("peers") or [] if "skipped" in r]
    containers = results.get("containers")
    if isinstance(containers, dict) and "skipped" in containers:
        rows.append({"name": "containers (every row)", **containers})
    return [{"name": r["name"], "why": r["skipped"], "fix": r.get("fix", "")} for r in rows]


def table(res: dict[str, Any]) -> str:
    lines = [f"{t['verdict']:>12}  {t['shown']:>14}  {t['target']}" for t in res["targets"]]
    missed = [t for t in res["targets"] if t["verdict"] == MISSED]
    lines.append(f"{len(missed)} of {len(res['targets'])} targets missed in this run")
    if res["skipped"]:
        lines.append("rows this run skipped:")
        lines += [f"  {s['name']}: {s['why']}" for s in res["skipped"]]
        fixes = sorted({s["fix"] for s in res["skipped"] if s["fix"]})
        lines += [f"to bring them: {fix}, then make bench again" for fix in fixes]
    return "\n".join(lines)
