"""The broker: the shared object the master serves, for both protocols.

Leased protocol (our workers): ``hello`` once, then ``exchange`` (acknowledge a batch of results
and lease the next batch, in one round trip), ``renew`` from a heartbeat thread, ``release``
and ``bye`` when stopping. Classic protocol (the tutorial's workers): ``get_task_queue`` and
``get_result_queue`` (``classic_protocol.py``, ``classic.py``). Control (the submit client,
readiness checks): ``submit``, ``progress``, ``wait``, ``report``, ``status``, ``cancel``.

Every method runs in a server thread of the connection it arrived on, so ``current_peer()``
is the TCP peer the server saw for that very call. Every method checks its arguments
(``calls.py``) before it changes anything.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from typing import Any

from . import calls, history, replay, wire
from .admission import Refused, admit
from .classic import ClassicResults, ClassicTasks, Takers
from .classic_protocol import ClassicProtocol
from .history import HISTORY_BYTES
from .identity import of_master
from .journal import Journal
from .journal_feed import JournalFeed
from .ledger import Ledger
from .registry import WorkerRegistry
from .report import build
from .results import ResultsUnavailable, sink_for
from .server import current_peer
from .status import job_status, workers_status

log = logging.getLogger("distproc.master")

#: a job's id, as ``submit`` makes it: the master's instance (``secrets.token_hex(4)``), then
#: the job's number on it (a master replaying its journal keeps the ids it finds there)
JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9]+")


class JobError(Exception):
    """A job that can't be accepted (bad spec, or another job still running)."""


class UnknownJob(JobError):
    """A job id this master does not know (never submitted, or dropped from its history)."""


class Broker(ClassicProtocol):
    """Jobs, workers and the two protocols, behind one lock (the classic calls:
    ``classic_protocol.py``)."""

    def __init__(self, history_bytes: int = HISTORY_BYTES, results_dir: str | None = None,
                 journal: Journal | None = None) -> None:  # fmt: skip
        self.instance = secrets.token_hex(4)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.registry = WorkerRegistry()
        self.jobs: dict[str, Ledger] = {}
        self.history_bytes = history_bytes
        self.results_dir = results_dir
        self.current: Ledger | None = None
        self.task_queue = ClassicTasks(self)
        self.results_sink = ClassicResults(self)
        self.takers = Takers()
        self._job_numbers = 0
        self.started = time.time()
        self.identity = of_master(self.instance)
        self.journal = journal
        self.feed = JournalFeed(journal, self.registry)
        if journal is not None:
            self._replay(journal)

    # -- workers ---------------------------------------------------------------------------
    def hello(self, wid: str, identity: dict[str, Any]) -> dict[str, Any]:
        """Register a worker (again, after a reconnect); returns the master's identity."""
        calls.text("wid", wid)
        identity = calls.identity(identity)
        with self.lock:
            self.registry.join(wid, identity, current_peer())
        log.info("worker %s joined from %s", wid, current_peer())
        return {"instance": self.instance, **self.identity}

    def exchange(
        self,
        wid: str,
        job_id: str | None,
        done: list[wire.Done],
        busy: float,
        want: int,
        wait: float = 0.0,
    ) -> tuple[Any, ...] | None:
        """Record results and lease up to ``want`` tasks, in one round trip (``wire.py``).

        Returns ``None`` when there is nothing to do (after waiting up to ``wait`` seconds),
        ``("hello",)`` if this master does not know the worker (it restarted), ``("classic",)``
        while a classic job runs, or a lease: ``(job_id, lease_id, lease_seconds, kind,
        ranges, source)``.
        """
        calls.text("wid", wid)
        calls.text("job_id", job_id, optional=True)
        done = calls.done("done", done)
        busy = calls.seconds("busy", busy, high=1e9)
        want = min(calls.integer("want", want, 0, 2**63), calls.MAX_WANT)
        wait = calls.seconds("wait", wait)
        peer = current_peer()
        deadline = time.monotonic() + wait
        seq = 0
        with self.lock:
            rec = self.registry.seen(wid, peer)
            if rec is None:
                return ("hello",)
            if done:
                job = self.jobs.get(job_id) if job_id else None
                if job is None or job.spec.protocol != "leased":
                    log.info("ignored results of %d leases for unknown job %s", len(done), job_id)
                else:
                    wire.check_done(done, job.total, job.id)  # raises before anything changes
                    job.settle(rec.index, peer, done, busy)
                    seq = self._noted(job, rec.index)
            if not seq or not self.feed.lagging(seq):
                return self._lease(rec, want, deadline)  # the journal's thread follows
            reply = self._lease(rec, want, 0.0)  # no waiting before the journal has them
        self.feed.commit(seq)  # the journal fell behind (journal.LAG_*): this worker waits for it
        if reply is not None or time.monotonic() >= deadline:
            return reply
        with self.lock:
            return self._lease(rec, want, deadline)

    def _lease(self, rec: Any, want: int, deadline: float) -> tuple[Any, ...] | None:
        """Under the lock: the next lease for worker ``rec``, waiting until ``deadline``."""
        while True:
            job = self.current
            if job is not None and job.spec.protocol == "classic" and not job.done:
                return ("classic",)
            if job is not None and want > 0 and job.spec.protocol == "leased":
                lease = job.lease(rec.index, want, self.registry.active())
                if lease is not None:
                    return wire.lease(job.id, lease.id, job.spec.lease_seconds,
                                      job.spec.kind, lease.spans, job.payloads)  # fmt: skip
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.changed.wait(remaining)
            rec.last_seen = time.monotonic()

    def renew(self, wid: str) -> int:
        """Heartbeat: extend every lease the worker holds. Returns -1 if the worker is unknown."""
        calls.text("wid", wid)
        with self.lock:
            rec = self.registry.seen(wid, current_peer())
            if rec is None:
                return -1
            job = self.current
            if job is None or job.spec.protocol != "leased":
                return 0
            return job.renew(rec.index)

    def release(self, wid: str, job_id: str, ranges: list[wire.Range]) -> int:
        """Give back tasks the worker will not run; they go back to the queue at once."""
        calls.text("wid", wid)
        calls.text("job_id", job_id)
        spans = wire.to_spans(calls.ranges("ranges", ranges))
        with self.lock:
            rec = self.registry.seen(wid, current_peer())
            job = self.jobs.get(job_id)
            if rec is None or job is None:
                return 0
            n = job.release(rec.index, spans)
            if n:
                self.changed.notify_all()
            return n

    def bye(self, wid: str) -> None:
        """A worker leaves on purpose (SIGTERM): it no longer counts as connected."""
        calls.text("wid", wid)
        with self.lock:
            self.registry.leave(wid)
        log.info("worker %s left", wid)

    # -- jobs ------------------------------------------------------------------------------
    def submit(self, spec: dict[str, Any], payloads: list[Any] | None = None) -> str:
        """Start a job from a spec (and optional explicit payloads); returns its id."""
        try:
            admitted = admit(spec, payloads, journaled=self.journal is not None)
        except Refused as exc:
            raise JobError(str(exc)) from None
        job_spec = admitted.spec
        with self.lock:
            if self.current is not None and not self.current.done:
                raise JobError(f"job {self.current.id} is still running")
            job_id = f"{self.instance}-{self._job_numbers + 1}"
            try:
                sink = sink_for(job_spec.results, self.results_dir, job_id)
            except OSError as exc:  # refused: the number stays free (nothing changed)
                raise JobError(f"cannot stream results: {exc}") from None
            self._job_numbers += 1
            job = Ledger(job_id, job_spec, admitted.tasks, sink=sink,
                         worker_name=self.registry.name)  # fmt: skip
            self.jobs[job_id] = job
            self.current = job
            seq = self.feed.submitted(job, admitted.kept)
            self._trim_history()
            if job_spec.protocol == "classic":
                self.takers.clear()
                self.registry.classic_peers = {}  # who is behind each IP: decided per job
            self.changed.notify_all()
        self.feed.commit(seq)  # the id the client gets is on disk
        log.info("job %s: %d %s tasks (%s, batch %d)", job_id, job.total, job_spec.kind,
                 job_spec.protocol, job_spec.batch)  # fmt: skip
        return job_id

    def _trim_history(self) -> None:
        """Under the lock: the history within its budget (``history.py``)."""
        self.feed.dropped(history.trim(self.jobs, self.current, self.history_bytes))

    def _noted(self, job: Ledger, worker: int | None = None) -> int:
        """Under the lock, after a call changed ``job``: the journal has the change
        (``JournalFeed.note``: returns what to commit), and if it ended, everyone knows."""
        seq = self.feed.note(job, worker)
        if job.done:
            self._finish(job)
        return seq

    def _finish(self, job: Ledger) -> None:
        log.info("job %s finished: %s", job.id, job.progress())
        self.changed.notify_all()

    def progress(self, job_id: str | None = None) -> dict[str, Any]:
        calls.text("job_id", job_id, optional=True)
        with self.lock:
            return self._job(job_id).progress()

    def wait(self, job_id: str, seconds: float) -> dict[str, Any]:
        """Block until the job finishes or ``seconds`` pass (at most 30); returns its progress."""
        calls.text("job_id", job_id)
        deadline = time.monotonic() + calls.seconds("seconds", seconds)
        with self.lock:
            job = self._job(job_id)
            while not job.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.changed.wait(min(remaining, 0.25))
            progress = job.progress()
        if progress["finished"]:
            self.feed.flush()  # a job said to be over is over on disk too
        return progress

    def cancel(self, job_id: str | None = None, reason: str = "cancelled") -> dict[str, Any]:
        """End a job now, whatever state it is in: what is unfinished is buried as dead."""
        calls.text("job_id", job_id, optional=True)
        reason = calls.text("reason", reason, limit=calls.MAX_ERROR)
        seq = 0
        with self.lock:
            job = self._job(job_id)
            if not job.done:
                if job.spec.protocol == "classic":
                    self.takers.clear()
                job.stop(reason)
                seq = self.feed.note(job)
                self._finish(job)
            progress = job.progress()
        self.feed.commit(seq)
        return progress

    def report(self, job_id: str | None = None, results: bool = False) -> dict[str, Any]:
        """The JSON-ready report of a job (the last one by default)."""
        calls.text("job_id", job_id, optional=True)
        calls.flag("results", results)
        with self.lock:
            job = self._job(job_id)
            job.sink.flush()
            rep = build(job, self.registry.by_index, self.identity).to_dict()
        if results:  # read back outside the lock: it may be a large file
            try:
                rep["results"] = sorted(job.sink.read(), key=lambda r: r["id"])
            except ResultsUnavailable as exc:
                raise JobError(str(exc)) from None
        return rep

    def status(self) -> dict[str, Any]:
        """Who is connected, and the current job (its progress and its ``spec``). Each worker
        also says what it did in the current job (``status.workers_status``): what a live
        view shows per worker without asking for the whole report, and what a chaos scenario
        asks before it kills a worker holding tasks."""
        with self.lock:
            workers = workers_status(self.registry, self.current, self.takers)
            job = job_status(self.current)
        return {
            "master": self.identity,
            "uptime_seconds": round(time.time() - self.started, 3),
            "workers": workers,
            "job": job,
            "journal": self.feed.status(),
        }

    def ping(self) -> str:
        return self.instance

    def _job(self, job_id: str | None) -> Ledger:
        job = self.jobs.get(job_id) if job_id else self.current
        if job is None:
            if job_id:
                raise UnknownJob(f"no such job: {job_id}")
            raise JobError("no job has run yet")
        return job

    # -- the journal ---------------------------------------------------------------------------
    def _replay(self, journal: Journal) -> None:
        """At start: every job the journal holds, as it was; the one that ran goes on."""
        records = journal.load()
        with self.lock:
            for rec in records:
                job = replay.restore(rec, self.registry, self.results_dir)
                self.jobs[job.id] = job
                self.current = job
                if rec.ended is None:
                    self.feed.resumed(job)
            self._trim_history()
        self.feed.start(len(records))

    # -- housekeeping ------------------------------------------------------------------------
    def reap(self) -> int:
        """Expire overdue leases of the current job; wakes waiting workers if tasks came back."""
        with self.lock:
            job = self.current
            if job is None or job.done or job.spec.protocol != "leased":
                return 0
            n = job.expire()
            seq = self.feed.note(job) if n or job.done else 0
            if n:
                log.warning("job %s: %d tasks from expired leases went back to the queue",
                            job.id, n)  # fmt: skip
                self.changed.notify_all()
            if job.done:
                self._finish(job)
        self.feed.commit(seq)
        return n
