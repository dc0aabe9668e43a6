"""The broker's side of the journal: what a call changed, handed over under the lock
(``note``) and waited for outside it (``commit``); the bookkeeping of the replay at start;
the journal's part of ``status``.

It stands alone because the broker's calls need only these verbs of the journal, and a master
without one gets the same verbs doing nothing, the same ``status`` keys included. What a
change becomes on disk is ``journal.py``'s; how a job comes back is ``replay.py``'s.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from .journal import Journal, Stats
from .ledger import Ledger
from .registry import WorkerRegistry

log = logging.getLogger("distproc.master")


class JournalFeed:
    """The journal (or None) as the broker's calls use it."""

    def __init__(self, journal: Journal | None, registry: WorkerRegistry) -> None:
        self.journal = journal
        self.registry = registry
        #: ``status``: jobs read back at start, when, and the job that went on running then
        self.replayed: dict[str, Any] = {"jobs": 0, "at": None, "resumed": None}

    def note(self, job: Ledger, worker: int | None = None) -> int:
        """Under the lock: hand the journal what ``job`` changed (its rows, counters and the
        tally of ``worker``; its end, once it has ended). Returns what ``commit`` waits for
        (0: no journal, or nothing to keep). No I/O here: a list swap and small copies."""
        if self.journal is None or job.log is None:
            return 0
        if job.finished is not None:  # its end says it all; later duplicates are not kept
            job.log = None
            return self.journal.add(("end", job.id, *job.end_record(self._who)))
        rows, job.log = job.log, []
        tallies = []
        if worker is not None and worker in job.tally:
            tallies.append((*self._who(worker), job.tally[worker].as_list()))
        return self.journal.add(("rows", job.id, rows, dict(job.counts), list(job.wrong),
                                 job.started_at, tallies))  # fmt: skip

    def _who(self, index: int) -> tuple[str, dict[str, Any]]:
        rec = self.registry.by_index[index]
        return rec.wid, rec.identity

    def submitted(self, job: Ledger, kept: bytes | None) -> int:
        """Under the lock: a new job (``kept``: its explicit payloads, pickled); from now on
        its changes are noted. Returns what ``commit`` waits for (0: no journal)."""
        if self.journal is None:
            return 0
        job.log = []
        seq = self.journal.add(("job", job.id, job.spec.as_dict(), kept, time.time()))
        return self.note(job) or seq  # a job of no tasks has ended already

    def dropped(self, job_ids: list[str]) -> None:
        """Under the lock: jobs the history let go; the journal keeps what the history keeps."""
        if job_ids and self.journal is not None:
            self.journal.add(("drop", job_ids))

    def lagging(self, seq: int) -> bool:
        """Whether the journal fell behind change ``seq`` (``Journal.lagging``)."""
        return self.journal is not None and self.journal.lagging(seq)

    def commit(self, seq: int) -> None:
        """Outside the lock: return once change ``seq`` is on disk (group commit)."""
        if seq and self.journal is not None:
            self.journal.commit(seq)

    def flush(self) -> None:
        """Outside the lock: everything handed over so far is on disk."""
        if self.journal is not None:
            self.journal.flush()

    def resumed(self, job: Ledger) -> None:
        """Under the lock, at start: a job replayed that had not ended when the master before
        stopped; what the replay decided (classic losses), or its end, goes to the journal."""
        self.note(job)
        if not job.done:
            self.replayed["resumed"] = {"job": job.id, "done": job.final, "total": job.total}
        log.info("job %s resumed from the journal: %d of %d tasks done",
                 job.id, job.final, job.total)  # fmt: skip

    def start(self, jobs: int) -> None:
        """After the replay of ``jobs`` jobs: what it decided is on disk, and from here on the
        journal's own thread commits."""
        assert self.journal is not None
        if jobs:
            self.replayed["jobs"] = jobs
            self.replayed["at"] = datetime.now(UTC).isoformat(timespec="milliseconds")
            # numbered past the leases of the master before, whose workers may still answer
            Ledger.number_leases_from(time.time_ns() // 1000)
            log.info("replayed %d jobs from the journal %s", jobs, self.journal.path)
        self.journal.flush()
        self.journal.start()

    def status(self) -> dict[str, Any]:
        """The journal's part of ``status``: the same keys with or without one (``path``
        None: no journal). ``replayed_jobs`` were read back at start, ``replayed_at`` when
        (ISO 8601, UTC; None if nothing was), ``resumed`` the job that went on running then
        (``{"job", "done", "total"}`` at that moment) or None; then what it cost so far."""
        j = self.journal
        out: dict[str, Any] = {
            "path": j.path if j is not None else None,
            "synchronous": j.sync if j is not None else None,
            "replayed_jobs": self.replayed["jobs"],
            "replayed_at": self.replayed["at"],
            "resumed": self.replayed["resumed"],
        }
        return {**out, **(j.stats if j is not None else Stats()).as_dict(),
                "bytes": j.size() if j is not None else 0}  # fmt: skip
