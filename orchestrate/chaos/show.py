"""The verdict table on stderr: one row per run, then what each run did and found."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..ui import print_checks
from .verdict import Verdict

_STATUS = {
    "pass": "[green]PASS[/green]",
    "fail": "[red]FAIL[/red]",
    "skipped": "[yellow]SKIP[/yellow]",
    "error": "[red]ERROR[/red]",
}
COLUMNS = ("scenario", "protocol", "target", "injected", "healed", "tasks", "ok", "failed",
           "dead", "dup", "lost", "recovered", "verdict")  # fmt: skip


def _seconds(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}s"


def recovered(v: Verdict) -> str:
    """The recovery cell: seconds until the throughput was back to half; 0s if it never
    fell below half; 'no' if it was still below at the job's end; '?' if unknown."""
    r = v.recovery
    if r is None:
        return "-"
    if r.seconds is not None:
        return f"{r.seconds:.1f}s"
    return "no" if r.dipped else "?"


def row(v: Verdict, cluster: str = "") -> list[str]:
    counts = [v.tasks, v.ok, v.failed, v.dead, v.duplicates, v.lost]
    counts_text = ["-"] * len(counts) if v.report is None else [str(n) for n in counts]
    target = v.target.removeprefix(f"{cluster}-") if cluster else v.target
    return [v.scenario, v.protocol, target, _seconds(v.injected_at),
            _seconds(v.healed_at), *counts_text, recovered(v), _STATUS[v.status]]  # fmt: skip


def print_verdicts(console: Console, verdicts: list[Verdict], title: str, cluster: str) -> None:
    """The table (targets named without the cluster's prefix), then each run's lines."""
    table = Table(title=title)
    for col in COLUMNS:
        numeric = col in ("injected", "healed", "tasks", "ok", "failed", "dead", "dup", "lost",
                          "recovered")  # fmt: skip
        table.add_column(col, justify="right" if numeric else "left")
    for v in verdicts:
        cells = row(v, cluster)
        lost = cells[10]
        if v.lost:
            cells[10] = f"[red]{lost}[/red]"
        table.add_row(*cells)
    console.print(table)
    for v in verdicts:
        head = Text.from_markup(f"{_STATUS[v.status]} {v.scenario} ({v.protocol}): ")
        console.print(Text.assemble(head, v.reason), soft_wrap=True, highlight=False)
        for step in v.steps:
            console.print(f"    {step}", soft_wrap=True, markup=False, highlight=False)
        if v.recovery is not None:
            console.print(f"    recovery: {v.recovery.note}", soft_wrap=True, markup=False)
        failed = [c for c in v.checks if c["status"] == "fail"]
        if failed:
            print_checks(console, failed)
