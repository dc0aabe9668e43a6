"""Rendering events and results on stderr: rich on a terminal, plain lines in CI."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from distproc.report import Letter, Report
from distproc.text import plural
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from .backends.base import Inventory


def interactive() -> bool:
    """A live display only on a terminal, and never in CI."""
    return sys.stderr.isatty() and not os.environ.get("CI")


PLAIN_WIDTH = 160


def make_console(live: bool | None = None) -> Console:
    """stderr; on a terminal rich sizes it, in CI lines are wide rather than wrapped."""
    live = interactive() if live is None else live
    return Console(
        stderr=True,
        highlight=False,
        force_terminal=live or None,
        no_color=not live,
        width=None if live else PLAIN_WIDTH,
    )


#: Plain progress: a changed count at most this often (seconds)...
PLAIN_EVERY = 2.0
#: ...and an unchanged one again only after this long, to show that it is still waiting.
PLAIN_QUIET = 30.0


class ConsoleEvents:
    """Events on stderr: live bars on a terminal; in CI, plain lines when a count changes
    (at most every ``PLAIN_EVERY`` s) and, while it stays put, every ``PLAIN_QUIET`` s: a
    log of ``workers connected: 2/4`` printed 42 times tells nothing the first did not."""

    def __init__(
        self,
        console: Console | None = None,
        live: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.live = interactive() if live is None else live
        self.console = console or make_console(self.live)
        self._progress: Progress | None = None
        self._tasks: dict[str, Any] = {}
        self._last_plain: dict[str, tuple[float, int, int]] = {}  # key -> (when, done, total)
        self._clock = clock

    # Every line is printed soft-wrapped: rich inserts no newline of its own, so a CI log has
    # one entry per line (a terminal still folds a long line by itself).

    def step(self, message: str) -> None:
        if self.live:
            self.console.print(f"[bold]==>[/bold] {message}", soft_wrap=True)
        else:
            self.console.print(f"==> {message}", markup=False, soft_wrap=True)

    def info(self, message: str) -> None:
        self.console.print(f"    {message}", markup=False, soft_wrap=True)

    def detail(self, message: str) -> None:
        if not self.live:
            self.console.print(f"    | {message}", markup=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        if self.live:
            self.console.print(f"[yellow]warning:[/yellow] {message}", soft_wrap=True)
        else:
            self.console.print(f"warning: {message}", markup=False, soft_wrap=True)

    def progress(self, key: str, done: int, total: int, label: str = "") -> None:
        if not self.live:
            now = self._clock()
            last = self._last_plain.get(key)
            if last is None:
                show = True
            elif (done, total) != last[1:]:
                show = done >= total or now - last[0] >= PLAIN_EVERY
            else:
                show = now - last[0] >= PLAIN_QUIET
            if show:
                self._last_plain[key] = (now, done, total)
                self.console.print(f"    {label or key}: {done}/{total}", markup=False)
            return
        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
        if key not in self._tasks:
            self._tasks[key] = self._progress.add_task(label or key, total=total)
        self._progress.update(self._tasks[key], completed=done, total=total)
        if done >= total:
            self._progress.stop_task(self._tasks[key])
            if all(t.finished for t in self._progress.tasks):
                self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._tasks.clear()


_MARKS = {
    "pass": "[green]PASS[/green]",
    "fail": "[red]FAIL[/red]",
    "skipped": "[yellow]SKIP[/yellow]",
}


def print_checks(console: Console, checks: list[dict[str, Any]]) -> None:
    """One line per check: PASS, FAIL or SKIP (never PASS for a check that judged nothing),
    its name and its evidence (or why it was skipped). Soft-wrapped, as ``print_tasks_not_ok``:
    a long evidence (``results_crossed_the_network`` lists every address) is never cut into
    lines mid-entry at the console's width, in CI or on a terminal."""
    for c in checks:
        mark = Text.from_markup(_MARKS.get(c["status"], "[red]FAIL[/red]"))
        line = Text.assemble(mark, f" {c['name']}: ", c["evidence"])
        console.print(line, soft_wrap=True, highlight=False)


def print_summary(console: Console, rows: list[dict[str, Any]], title: str) -> None:
    """The per-worker table: worker, network, IP, tasks, rate."""
    table = Table(title=title)
    for col in ("worker", "network", "IP", "tasks", "rate (tasks/s)"):
        table.add_column(col, justify="right" if col in ("tasks", "rate (tasks/s)") else "left")
    for r in rows:
        table.add_row(r["worker"], r["network"], r["ip"], str(r["tasks"]), f"{r['rate']:.1f}")
    console.print(table)


LETTERS_SHOWN = 3  # per kind (lost, dead, failed): the rest is in the JSON report
ERROR_CHARS = 200  # a worker's traceback is for the logs; a line names the error


def _one_line(text: str, limit: int | None = None) -> str:
    """Whitespace (a traceback's newlines) folded to single spaces, cut at ``limit``."""
    flat = " ".join(text.split())
    return flat if limit is None or len(flat) <= limit else flat[: limit - 1] + "…"


def letter_text(x: Letter, inventory: Inventory | None = None) -> str:
    """One task that did not end ok: its id, who held it (worker, peer, and the container
    the engine says has that address), how many attempts it had, and the last error."""
    who = []
    if x.worker:
        who.append(x.worker)
    if x.peer and x.peer not in (x.worker or ""):  # a classic worker is named by its peer
        who.append(f"at {x.peer}")
    container = inventory.owner_of(x.peer) if inventory and x.peer else None
    if container:
        who.append(f"({container.name})")
    held = f" held by {' '.join(who)}" if who else ""
    tries = f", {plural(x.attempts, 'attempt')}"
    return f"task {x.id}{held}{tries}: {_one_line(x.error, ERROR_CHARS)}"


def tasks_not_ok(report: Report, inventory: Inventory | None = None) -> list[Text]:
    """The lines that name what did not end ok: the report's summary, then up to
    ``LETTERS_SHOWN`` lost, dead and failed tasks each. Empty when every task ended ok."""
    t = report.totals
    if t.ok == t.tasks and not t.wrong_values and report.finished:
        return []
    lines = [Text.assemble(("tasks not ok: ", "red"), _one_line(report.summary))]
    for word, count, letters in (
        ("lost", t.lost, report.lost),
        ("dead", t.dead, report.dead_letters),
        ("failed", t.failed, report.failures),
    ):
        for x in letters[:LETTERS_SHOWN]:
            lines.append(Text.assemble((f"  {word}: ", "red"), letter_text(x, inventory)))
        hidden = count - min(len(letters), LETTERS_SHOWN)
        if hidden > 0:
            lines.append(Text(f"  {word}: {hidden} more in the report (--json)"))
    return lines


def print_tasks_not_ok(
    console: Console, report: Report, inventory: Inventory | None = None
) -> None:
    """Each entry on one line, never wrapped mid-entry (soft wrap: rich inserts no newline,
    a terminal folds a long line by itself), so a person and a grep of a CI log see whole
    entries."""
    for line in tasks_not_ok(report, inventory):
        console.print(line, soft_wrap=True, highlight=False)
