"""The broker: the shared object the master serves, for both protocols.

Leased protocol (our workers): ``hello`` once, then ``exchange`` (acknowledge a batch of results
and lease the next batch, in one round trip), ``renew`` from a heartbeat thread, ``release``
and ``bye`` when stopping. Classic protocol (the tutorial's workers): ``get_task_queue`` and
``get_result_queue`` (see ``classic.py``). Control (the submit client, readiness checks):
``submit``, ``progress``, ``wait``, ``report``, ``status``, ``cancel``.

Every method runs in a server thread of the connection it arrived on, so ``current_peer()``
is the TCP peer the server saw for that very call. Every method checks its arguments
(``calls.py``) before it changes anything.
"""

from __future__ import annotations

import logging
import os
import pickle
import platform
import queue
import re
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from . import calls, kinds, replay, wire
from .classic import ClassicResults, ClassicTasks, Takers, parse_result
from .identity import netns
from .journal import Journal, Stats
from .ledger import Ledger
from .registry import WorkerRegistry
from .report import build
from .results import ResultsUnavailable, sink_for
from .server import current_connection, current_peer
from .spec import MAX_TASKS, make_spec

log = logging.getLogger("distproc.master")

#: a job's id, as ``submit`` makes it: the master's instance (``secrets.token_hex(4)``), then
#: the job's number on it (a master replaying its journal keeps the ids it finds there)
JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9]+")
HISTORY_BYTES = 64 * 2**20  # finished jobs kept for `report`, by what they hold, not by count


class JobError(Exception):
    """A job that can't be accepted (bad spec, or another job still running)."""


class UnknownJob(JobError):
    """A job id this master does not know (never submitted, or dropped from its history)."""


class Broker:
    """Jobs, workers and the two protocols, behind one lock."""

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
        self.identity = {
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "netns": netns(),
            "instance": self.instance,
            "python": platform.python_version(),  # as workers report theirs (identity.py)
        }
        self.journal = journal
        self.replayed: dict[str, Any] = {"jobs": 0, "at": None, "resumed": None}
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
                    seq = self._note(job, rec.index)
                    if job.done:
                        self._finish(job)
            if not seq or not self.journal.lagging(seq):  # type: ignore[union-attr]
                return self._lease(rec, want, deadline)  # the journal's thread follows
            reply = self._lease(rec, want, 0.0)  # no waiting before the journal has them
        self._commit(seq)  # the journal fell behind (journal.LAG_*): this worker waits for it
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

    # -- classic protocol --------------------------------------------------------------------
    def get_task_queue(self) -> ClassicTasks:
        return self.task_queue

    def get_result_queue(self) -> ClassicResults:
        return self.results_sink

    def classic_take(self, block: bool = True, timeout: float | None = None) -> Any:
        """A tutorial worker's ``task.get()``: the next task of the classic job, remembered
        as taken by this connection. Raises ``queue.Empty`` like ``Queue.get``."""
        calls.flag("block", block)
        timeout = calls.seconds("timeout", timeout, high=366 * 86400, optional=True)
        conn, peer = current_connection(), current_peer()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            while True:
                job = self.current
                if job is not None and job.spec.protocol == "classic":
                    who = self.registry.classic_name(peer) if self.journal is not None else ""
                    tid = job.take(who, peer)
                    if tid is not None:
                        self.takers.took(conn, tid, peer)
                        payload, seq = job.payloads[tid], self._note(job)
                        break
                remaining = 1.0 if deadline is None else deadline - time.monotonic()
                if not block or remaining <= 0:
                    raise queue.Empty
                self.changed.wait(min(remaining, 1.0))
        self._commit(seq)  # taken, on disk: lost, not served twice, if the master dies now
        return payload

    def classic_pending(self) -> int:
        with self.lock:
            job = self.current
            if job is None or job.spec.protocol != "classic" or job.done:
                return 0
            return job.pending_count()

    def classic_result(self, item: Any) -> None:
        """Account one tutorial-style result: ``'n * n = r'`` or the bare int ``n*n``."""
        peer = current_peer()
        with self.lock:
            job = self.current
            if job is None or job.spec.protocol != "classic":
                log.info("ignored a classic result from %s: no classic job is running", peer)
                return
            tid, value = parse_result(item, job.payloads.index_of)  # type: ignore[attr-defined]
            if tid is None:
                job.counts["stale"] += 1
                return
            self.takers.answered(tid)
            index = self.registry.classic(peer)
            job.accept(index, peer, [(tid, value)])
            seq = self._note(job, index)
            if job.done:
                self._finish(job)
        self._commit(seq)

    def connection_closed(self, conn: int) -> None:
        """The server's disconnect hook: what this connection took and never answered is lost."""
        with self.lock:
            taken = self.takers.closed(conn)
            job = self.current
            if not taken or job is None or job.spec.protocol != "classic":
                return
            for tid, peer in sorted(taken.items()):
                who = self.registry.classic_name(peer)
                reason = f"lost: {who} took it and its connection closed without a result"
                if job.lose(tid, reason, who, peer):
                    log.warning("job %s: task %d lost with %s (%s)", job.id, tid, who, peer)
            self.changed.notify_all()
            seq = self._note(job)
            if job.done:
                self._finish(job)
        self._commit(seq)

    # -- jobs ------------------------------------------------------------------------------
    def submit(self, spec: dict[str, Any], payloads: list[Any] | None = None) -> str:
        """Start a job from a spec (and optional explicit payloads); returns its id."""
        if type(spec) is not dict:
            raise JobError(f"bad job spec: expected a dict, not {type(spec).__name__}")
        if payloads is not None:
            if type(payloads) is not list or len(payloads) > MAX_TASKS:
                raise JobError(f"payloads must be a list of at most {MAX_TASKS:,} items")
            spec = {**spec, "tasks": len(payloads)}
        try:
            job_spec = make_spec(spec)
        except ValueError as exc:
            raise JobError(f"bad job spec: {exc}") from None
        if payloads is not None and job_spec.protocol == "classic":
            raise JobError("classic jobs are built from a spec (distinct ints), not payloads")
        tasks = payloads if payloads is not None else kinds.make_payloads(
            job_spec.kind, job_spec.tasks, job_spec.size, job_spec.seed
        )  # fmt: skip
        try:
            kinds.check_payloads(job_spec.kind, payloads if payloads is not None else
                                 [job_spec.size] if job_spec.tasks else [])  # fmt: skip
        except ValueError as exc:
            raise JobError(f"bad job: {exc}") from None
        kept = None
        if payloads is not None and self.journal is not None:  # before anything changes
            try:
                kept = pickle.dumps(payloads, 5)
            except Exception as exc:
                raise JobError(f"payloads the journal cannot keep: {exc}") from None
        if job_spec.kind == "cpu":  # the one slow check: its answers computed before the lock
            for p in set(payloads) if payloads is not None else {job_spec.size}:
                kinds.expected("cpu", p)
        with self.lock:
            if self.current is not None and not self.current.done:
                raise JobError(f"job {self.current.id} is still running")
            self._job_numbers += 1
            job_id = f"{self.instance}-{self._job_numbers}"
            try:
                sink = sink_for(job_spec.results, self.results_dir, job_id)
            except OSError as exc:
                raise JobError(f"cannot stream results: {exc}") from None
            job = Ledger(job_id, job_spec, tasks, sink=sink, worker_name=self.registry.name)
            self.jobs[job_id] = job
            self.current = job
            seq = 0
            if self.journal is not None:
                job.log = []
                seq = self.journal.add(("job", job_id, job_spec.as_dict(), kept, time.time()))
                seq = self._note(job) or seq  # a job of no tasks has ended already
            self._trim_history()
            if job_spec.protocol == "classic":
                self.takers.clear()
                self.registry.classic_peers = {}  # who is behind each IP: decided per job
            self.changed.notify_all()
        self._commit(seq)  # the id the client gets is on disk
        log.info("job %s: %d %s tasks (%s, batch %d)", job_id, job.total, job_spec.kind,
                 job_spec.protocol, job_spec.batch)  # fmt: skip
        return job_id

    def _trim_history(self) -> None:
        """Drop the oldest finished jobs while the history holds more than its budget."""
        held = sum(j.nbytes() for j in self.jobs.values())
        dropped = []
        for job_id in list(self.jobs):
            if held <= self.history_bytes:
                break
            job = self.jobs[job_id]
            if job is not self.current:
                held -= job.nbytes()
                del self.jobs[job_id]
                dropped.append(job_id)
        if dropped and self.journal is not None:  # the journal keeps what the history keeps
            self.journal.add(("drop", dropped))

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
        if progress["finished"] and self.journal is not None:
            self.journal.flush()  # a job said to be over is over on disk too
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
                seq = self._note(job)
                self._finish(job)
            progress = job.progress()
        self._commit(seq)
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
        also says what it did in the current job: ``tasks`` accepted from it and ``leased``,
        the tasks it holds now (0 with no job; in a classic job, the tasks its connections
        took and have not answered): what a live view shows per worker without asking for
        the whole report, and what a chaos scenario asks before it kills a worker holding
        tasks."""
        with self.lock:
            workers = self.registry.status()
            current = self.current
            held: Mapping[int, int] = {}
            if current is not None and current.spec.protocol == "classic":
                held = self._classic_held()
            elif current is not None:
                held = current.held()
            for index, w in enumerate(workers):
                tally = current.tally.get(index) if current is not None else None
                w["tasks"] = tally.tasks if tally is not None else 0
                w["leased"] = held.get(index, 0)
            job = (
                None if current is None else {**current.progress(), "spec": current.spec.as_dict()}
            )
        return {
            "master": self.identity,
            "uptime_seconds": round(time.time() - self.started, 3),
            "workers": workers,
            "job": job,
            "journal": self.journal_status(),
        }

    def journal_status(self) -> dict[str, Any]:
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

    def _classic_held(self) -> Counter[int]:
        """Classic tasks taken and not answered, by the worker each peer counts as (the
        registry's rule for classic results). Called with the lock held."""
        out: Counter[int] = Counter()
        for peer, n in self.takers.held_by_peer().items():
            index = self.registry.classic_index(peer)
            if index is not None:
                out[index] += n
        return out

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
    def _note(self, job: Ledger, worker: int | None = None) -> int:
        """Under the lock: hand the journal what ``job`` changed (its rows, counters and the
        tally of ``worker``; its end, once it has ended). Returns what ``_commit`` waits for
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

    def _commit(self, seq: int) -> None:
        """Outside the lock: return once change ``seq`` is on disk (group commit)."""
        if seq and self.journal is not None:
            self.journal.commit(seq)

    def _replay(self, journal: Journal) -> None:
        """At start: every job the journal holds, as it was; the one that ran goes on."""
        records = journal.load()
        with self.lock:
            for rec in records:
                job = replay.restore(rec, self.registry, self.results_dir)
                self.jobs[job.id] = job
                self.current = job
                if rec.ended is None:
                    self._note(job)  # what the replay decided (classic losses), or its end
                    if not job.done:
                        self.replayed["resumed"] = {"job": job.id, "done": job.final,
                                                    "total": job.total}  # fmt: skip
                    log.info("job %s resumed from the journal: %d of %d tasks done",
                             job.id, job.final, job.total)  # fmt: skip
            self._trim_history()
        if records:
            self.replayed["jobs"] = len(records)
            self.replayed["at"] = datetime.now(UTC).isoformat(timespec="milliseconds")
            # numbered past the leases of the master before, whose workers may still answer
            Ledger.number_leases_from(time.time_ns() // 1000)
            log.info("replayed %d jobs from the journal %s", len(records), journal.path)
        journal.flush()
        journal.start()  # from here on, its own thread commits

    # -- housekeeping ------------------------------------------------------------------------
    def reap(self) -> int:
        """Expire overdue leases of the current job; wakes waiting workers if tasks came back."""
        with self.lock:
            job = self.current
            if job is None or job.done or job.spec.protocol != "leased":
                return 0
            n = job.expire()
            seq = self._note(job) if n or job.done else 0
            if n:
                log.warning("job %s: %d tasks from expired leases went back to the queue",
                            job.id, n)  # fmt: skip
                self.changed.notify_all()
            if job.done:
                self._finish(job)
        self._commit(seq)
        return n
