"""The broker's history of jobs, kept for ``report``: bounded by the bytes they hold.

It stands alone because the bound is one rule with one number: a job's ledger says what it
holds (``Ledger.nbytes``: 10M tasks of one job cost far more than a thousand jobs of ten), so
the history drops the oldest finished jobs by bytes, never by count, and never the current one.
"""

from __future__ import annotations

from .ledger import Ledger

HISTORY_BYTES = 64 * 2**20  # finished jobs kept for `report`, by what they hold, not by count


def trim(jobs: dict[str, Ledger], current: Ledger | None, budget: int) -> list[str]:
    """Drop the oldest jobs but ``current`` from ``jobs`` while they hold more than ``budget``
    bytes; returns the ids dropped (the journal lets them go too)."""
    held = sum(j.nbytes() for j in jobs.values())
    dropped = []
    for job_id in list(jobs):
        if held <= budget:
            break
        job = jobs[job_id]
        if job is not current:
            held -= job.nbytes()
            del jobs[job_id]
            dropped.append(job_id)
    return dropped
