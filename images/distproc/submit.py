"""The submit client: start a job on a running master (or attach to one started already),
follow it, and return its report."""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from .client import broker, connect

Progress = Callable[[dict[str, Any]], None]
Announce = Callable[[str, int], None]  # (job id, tasks): said once, before any progress


def run_job(
    address: tuple[str, int],
    authkey: bytes,
    spec: dict[str, Any],
    payloads: list[Any] | None = None,
    timeout: float | None = None,
    progress: Progress | None = None,
    connect_timeout: float = 30.0,
    poll: float = 0.25,
    results: bool = False,
    timing: dict[str, float] | None = None,
    announce: Announce | None = None,
) -> dict[str, Any]:
    """Submit ``spec``, wait until it finishes (or cancel it after ``timeout``), report it.

    A job that times out is cancelled: in classic mode its unanswered tasks are reported
    lost, in leased mode dead. Either way the report says what happened to every id.
    ``timing``, if given, gets the seconds each step took as the client saw them: the job
    end to end is what a user waits for, the report's ``elapsed_seconds`` the master's clock.
    """
    marks = [time.perf_counter()]
    manager = connect(address, authkey, connect_timeout)
    b = broker(manager)
    marks.append(time.perf_counter())
    job_id = b.submit(spec, payloads)
    marks.append(time.perf_counter())
    if announce is not None:
        announce(job_id, b.progress(job_id)["total"])
    follow(b, job_id, timeout, progress, poll)
    marks.append(time.perf_counter())
    rep = b.report(job_id, results)
    marks.append(time.perf_counter())
    if timing is not None:
        steps = [b - a for a, b in itertools.pairwise(marks)]
        timing.update(zip(TIMING[:-1], steps, strict=True), end_to_end=marks[-1] - marks[0])
    return rep


def follow(b: Any, job_id: str, timeout: float | None, progress: Progress | None,
           poll: float) -> None:  # fmt: skip
    """Wait until the job finishes, or cancel it after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        state = b.wait(job_id, poll)
        if progress is not None:
            progress(state)
        if state["finished"]:
            return
        if deadline is not None and time.monotonic() > deadline:
            b.cancel(job_id, f"not finished within the {timeout:.0f}s job timeout")
            return


def attach_job(
    address: tuple[str, int],
    authkey: bytes,
    job_id: str,
    timeout: float | None = None,
    progress: Progress | None = None,
    connect_timeout: float = 30.0,
    poll: float = 0.25,
    results: bool = False,
    announce: Announce | None = None,
) -> dict[str, Any]:
    """Follow job ``job_id``, submitted earlier (a master restarted on its journal goes on
    with it under the same id), as ``run_job`` does, and return its report. Raises
    ``broker.UnknownJob`` if the master does not know the id."""
    b = broker(connect(address, authkey, connect_timeout))
    state = b.progress(job_id)
    if announce is not None:
        announce(job_id, state["total"])
    follow(b, job_id, timeout, progress, poll)
    return b.report(job_id, results)


#: the client's steps, in ``run_job``'s ``timing`` (seconds); the last is their sum
TIMING = ("connect", "submit", "wait", "report", "end_to_end")


class ProgressPrinter:
    """Progress on stderr: a bar on a terminal, plain lines otherwise, or JSON lines."""

    def __init__(self, style: str = "auto", stream: TextIO = sys.stderr) -> None:
        if style == "auto":
            style = "bar" if stream.isatty() else "plain"
        self.style = style
        self.stream = stream
        self._last_plain = -1.0
        self._t0 = time.monotonic()

    def __call__(self, state: dict[str, Any]) -> None:
        done, total = state["done"], state["total"]
        if self.style == "none":
            return
        if self.style == "json":
            print(json.dumps({"progress": state}), file=self.stream, flush=True)
            return
        frac = done / total if total else 1.0
        if self.style == "bar":
            width = 30
            bar = "#" * int(frac * width)
            end = "\n" if state["finished"] else ""
            print(
                f"\r[{bar:<{width}}] {frac:6.1%} {done}/{total} "
                f"dead {state['dead']} dup {state['duplicates']}",
                end=end,
                file=self.stream,
                flush=True,
            )
            return
        now = time.monotonic()
        if state["finished"] or now - self._last_plain >= 2.0:
            self._last_plain = now
            print(
                f"progress {done}/{total} ({frac:.0%}) ok {state['ok']} "
                f"failed {state['failed']} dead {state['dead']} "
                f"duplicates {state['duplicates']} after {now - self._t0:.1f}s",
                file=self.stream,
                flush=True,
            )

    def job(self, job_id: str, total: int) -> None:
        """The job's id, first (JSON: ``{"job": {"id", "total"}}``): what ``attach`` takes."""
        if self.style == "json":
            print(json.dumps({"job": {"id": job_id, "total": total}}), file=self.stream,
                  flush=True)  # fmt: skip
        elif self.style != "none":
            print(f"job {job_id}: {total} tasks", file=self.stream, flush=True)

    def timing(self, timing: dict[str, float]) -> None:
        """The client's steps once the report is in (JSON lines only: for the bench)."""
        if self.style == "json":
            print(json.dumps({"timing": timing}), file=self.stream, flush=True)
