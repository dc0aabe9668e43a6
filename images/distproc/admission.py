"""A job's spec and payloads, checked before the broker takes its lock.

It stands alone because all of it runs before anything changes and outside the lock: the spec
(``spec.py``), the payloads against their kind, the pickle the journal will keep, and the
answers of the cpu kind, the one slow check (trial division, about a minute at
``kinds.MAX_CPU_PAYLOAD``), which no worker's exchange may wait for. The broker turns a
``Refused`` into its ``JobError``, the exception its clients know.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

from . import kinds
from .spec import MAX_TASKS, JobSpec, make_spec


class Refused(Exception):
    """A job that can't be accepted: the message says why (``broker.JobError`` carries it)."""


@dataclass(frozen=True)
class Admitted:
    """A job ready to start: its spec, its tasks and, with a journal, its pickled payloads."""

    spec: JobSpec
    tasks: Any  # the explicit payloads, or those the kind makes from the spec
    kept: bytes | None  # what the journal keeps of explicit payloads


def admit(spec: dict[str, Any], payloads: list[Any] | None, journaled: bool) -> Admitted:
    """Check a job (raises ``Refused`` before anything changes)."""
    if type(spec) is not dict:
        raise Refused(f"bad job spec: expected a dict, not {type(spec).__name__}")
    if payloads is not None:
        if type(payloads) is not list or len(payloads) > MAX_TASKS:
            raise Refused(f"payloads must be a list of at most {MAX_TASKS:,} items")
        spec = {**spec, "tasks": len(payloads)}
    try:
        job_spec = make_spec(spec)
    except ValueError as exc:
        raise Refused(f"bad job spec: {exc}") from None
    if payloads is not None and job_spec.protocol == "classic":
        raise Refused("classic jobs are built from a spec (distinct ints), not payloads")
    tasks = payloads if payloads is not None else kinds.make_payloads(
        job_spec.kind, job_spec.tasks, job_spec.size, job_spec.seed
    )  # fmt: skip
    try:
        kinds.check_payloads(job_spec.kind, payloads if payloads is not None else
                             [job_spec.size] if job_spec.tasks else [])  # fmt: skip
    except ValueError as exc:
        raise Refused(f"bad job: {exc}") from None
    kept = None
    if payloads is not None and journaled:
        try:
            kept = pickle.dumps(payloads, 5)
        except Exception as exc:
            raise Refused(f"payloads the journal cannot keep: {exc}") from None
    if job_spec.kind == "cpu":  # its answers computed here, before the lock
        for p in set(payloads) if payloads is not None else {job_spec.size}:
            kinds.expected("cpu", p)
    return Admitted(job_spec, tasks, kept)
