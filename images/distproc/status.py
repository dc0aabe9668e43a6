"""The parts of the broker's ``status``: each worker with what it did in the current job, and
the job itself.

It stands alone because ``status`` is read often (a live view, a chaos scenario before it
kills a worker holding tasks) and must stay a view: these functions read the registry, the
job and the classic takers under the broker's lock, and change nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from .classic import Takers
from .ledger import Ledger
from .registry import WorkerRegistry


def workers_status(registry: WorkerRegistry, current: Ledger | None,
                   takers: Takers) -> list[dict[str, Any]]:  # fmt: skip
    """The registry's workers, each with ``tasks`` accepted from it in the current job and
    ``leased``, the tasks it holds now (0 with no job; in a classic job, the tasks its
    connections took and have not answered)."""
    workers = registry.status()
    held: Mapping[int, int] = {}
    if current is not None and current.spec.protocol == "classic":
        held = classic_held(takers, registry)
    elif current is not None:
        held = current.held()
    for index, w in enumerate(workers):
        tally = current.tally.get(index) if current is not None else None
        w["tasks"] = tally.tasks if tally is not None else 0
        w["leased"] = held.get(index, 0)
    return workers


def job_status(current: Ledger | None) -> dict[str, Any] | None:
    """The current job's progress and its ``spec``; None before the first job."""
    return None if current is None else {**current.progress(), "spec": current.spec.as_dict()}


def classic_held(takers: Takers, registry: WorkerRegistry) -> Counter[int]:
    """Classic tasks taken and not answered, by the worker each peer counts as (the
    registry's rule for classic results)."""
    out: Counter[int] = Counter()
    for peer, n in takers.held_by_peer().items():
        index = registry.classic_index(peer)
        if index is not None:
            out[index] += n
    return out
