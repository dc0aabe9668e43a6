"""The job spec: what a job is, defined once (defaults, bounds, validation).

The master, the submit client, the CLI flags and the orchestrator's model are all derived
from ``JobSpec``; nothing else repeats a field or a default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .kinds import KindError, check_kind

MAX_TASKS = 10_000_000  # the ledger keeps a few lists of this length in memory


@dataclass(frozen=True)
class JobSpec:
    """What a job is: built from a spec by the master, or submitted with explicit payloads."""

    kind: str = "square"
    tasks: int = 1000
    size: int = 0
    seed: int = 1
    protocol: str = "leased"
    batch: int = 256
    lease_seconds: float = 10.0
    task_timeout: float = 600.0  # renewals end here: a task hung in a live worker comes back
    max_attempts: int = 3
    retry_errors: bool = True
    results: str = "drop"  # drop each value once checked, or stream it to a file

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def make_spec(fields: dict[str, Any]) -> JobSpec:
    """A checked JobSpec from a dict; raises ValueError naming the bad field."""
    try:
        spec = JobSpec(**fields)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    try:
        check_kind(spec.kind)
    except KindError as exc:
        raise ValueError(str(exc)) from None
    if spec.protocol not in ("leased", "classic"):
        raise ValueError(f"unknown protocol {spec.protocol!r}: use leased or classic")
    if spec.protocol == "classic" and spec.kind != "square":
        raise ValueError("the classic protocol runs the tutorial's square job only")
    for name, low in (("tasks", 0), ("size", 0), ("batch", 1), ("max_attempts", 1)):
        value = getattr(spec, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, not {value!r}")
    for name in ("lease_seconds", "task_timeout"):
        value = getattr(spec, name)
        if not isinstance(value, int | float) or not 0 < value < float("inf"):
            raise ValueError(f"{name} must be a number of seconds > 0, not {value!r}")
    if spec.results not in ("drop", "stream"):
        raise ValueError(f"results must be drop or stream, not {spec.results!r}")
    if spec.max_attempts > 100:
        raise ValueError(f"max_attempts must be at most 100, not {spec.max_attempts}")
    if spec.tasks > MAX_TASKS:
        raise ValueError(f"tasks must be at most {MAX_TASKS:,}, not {spec.tasks:,}")
    return spec
