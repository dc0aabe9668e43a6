"""The broker: the shared object the master serves, for both protocols.

Leased protocol (our workers): ``hello`` once, then ``exchange`` (acknowledge a batch of results
and lease the next batch, in one round trip), ``renew`` from a heartbeat thread, ``release``
and ``bye`` when stopping. Classic protocol (the tutorial's workers): ``get_task_queue`` and
``get_result_queue`` serve a plain queue of ints and a results sink. Control (the submit
client, readiness checks): ``submit``, ``progress``, ``report``, ``status``, ``cancel``.

Every method runs in a server thread of the connection it arrived on, so ``current_peer()``
is the TCP peer the server saw for that very call.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import queue
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import kinds, report
from .identity import netns
from .ledger import Ledger
from .server import current_peer
from .spec import make_spec

log = logging.getLogger("distproc.master")

CLASSIC_RESULT = re.compile(r"^\s*(-?\d+)\s*\*\s*(-?\d+)\s*=\s*(-?\d+)\s*$")
LIVE_SECONDS = 5.0  # a worker unseen for longer is not counted as connected


class JobError(Exception):
    """A job that can't be accepted (bad spec, or another job still running)."""


@dataclass
class WorkerRecord:
    """What the master knows of one worker across jobs."""

    index: int
    wid: str
    identity: dict[str, Any]
    peers: set[str] = field(default_factory=set)
    first_seen: float = 0.0
    last_seen: float = 0.0
    left: bool = False

    def live(self, now: float) -> bool:
        """Connected: seen lately, and not gone on purpose."""
        return not self.left and now - self.last_seen < LIVE_SECONDS


class ClassicResults:
    """The classic result queue: ``put`` is accounted at once, with the peer it came from."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self._broker.classic_result(item, current_peer())

    def put_nowait(self, item: Any) -> None:
        self.put(item)

    def qsize(self) -> int:
        return 0

    def empty(self) -> bool:
        return True


class ClassicTasks:
    """The classic task queue: a plain queue of ints; the first ``get`` starts the job clock."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self.queue: queue.Queue[Any] = queue.Queue()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        item = self.queue.get(block, timeout)
        job = self._broker.current
        if job is not None and job.started is None:
            with self._broker.lock:
                job.mark_started()
        return item

    def get_nowait(self) -> Any:
        return self.get(False)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self.queue.put(item, block, timeout)

    def qsize(self) -> int:
        return self.queue.qsize()

    def empty(self) -> bool:
        return self.queue.empty()


class Broker:
    """Jobs, workers and the two protocols, behind one lock."""

    def __init__(self, history: int = 20) -> None:
        self.instance = secrets.token_hex(4)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.workers: dict[str, WorkerRecord] = {}
        self.by_index: list[WorkerRecord] = []
        self.classic_peers: dict[str, int] = {}
        self.jobs: dict[str, Ledger] = {}
        self.history = history
        self.current: Ledger | None = None
        self.task_queue = ClassicTasks(self)
        self.results_sink = ClassicResults(self)
        self._classic_tid: dict[Any, int] = {}
        self._job_numbers = itertools.count(1)
        self.started = time.time()
        self.identity = {
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "netns": netns(),
            "instance": self.instance,
        }

    # -- workers ---------------------------------------------------------------------------
    def _record(self, wid: str) -> WorkerRecord | None:
        rec = self.workers.get(wid)
        if rec is not None:
            rec.last_seen = time.monotonic()
            rec.peers.add(current_peer())
            rec.left = False
        return rec

    def hello(self, wid: str, identity: dict[str, Any]) -> dict[str, Any]:
        """Register a worker (again, after a reconnect); returns the master's identity."""
        with self.lock:
            rec = self.workers.get(wid) or self._new_record(wid, identity)
            rec.identity = dict(identity)
            self._record(wid)
        log.info("worker %s joined from %s", wid, current_peer())
        return {"instance": self.instance, **self.identity}

    def _new_record(self, wid: str, identity: dict[str, Any]) -> WorkerRecord:
        rec = WorkerRecord(len(self.by_index), wid, dict(identity))
        rec.first_seen = rec.last_seen = time.monotonic()
        self.workers[wid] = rec
        self.by_index.append(rec)
        return rec

    def _active_workers(self) -> int:
        now = time.monotonic()
        return sum(1 for r in self.by_index if r.live(now))

    def exchange(
        self,
        wid: str,
        job_id: str | None,
        oks: list[tuple[int, Any]],
        errors: list[tuple[int, str]],
        busy: float,
        lease_ids: list[int],
        want: int,
        wait: float = 0.0,
    ) -> tuple[Any, ...] | None:
        """Acknowledge results and lease up to ``want`` tasks, in one round trip.

        Returns ``None`` when there is nothing to do (after waiting up to ``wait`` seconds),
        ``("hello",)`` if this master does not know the worker (it restarted), ``("classic",)``
        while a classic job runs, or ``(job_id, lease_id, lease_seconds, kind, tasks)`` where
        ``tasks`` is a list of ``(task_id, payload)``.
        """
        peer = current_peer()
        deadline = time.monotonic() + wait
        with self.lock:
            rec = self._record(wid)
            if rec is None:
                return ("hello",)
            if oks or errors:
                job = self.jobs.get(job_id) if job_id else None
                if job is None or job.spec.protocol != "leased":
                    log.info(
                        "ignored %d results for unknown job %s", len(oks) + len(errors), job_id
                    )
                else:
                    job.accept(rec.index, peer, oks, errors, busy, lease_ids)
                    if job.done:
                        self._finish(job)
            while True:
                job = self.current
                if job is not None and job.spec.protocol == "classic":
                    return ("classic",)
                if job is not None and want > 0:
                    lease = job.lease(rec.index, want, self._active_workers())
                    if lease is not None:
                        payloads = job.payloads
                        return (
                            job.id,
                            lease.id,
                            job.spec.lease_seconds,
                            job.spec.kind,
                            [(t, payloads[t]) for t in lease.tids],
                        )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.changed.wait(remaining)
                rec.last_seen = time.monotonic()

    def renew(self, wid: str) -> int:
        """Heartbeat: extend every lease the worker holds. Returns -1 if the worker is unknown."""
        with self.lock:
            if self._record(wid) is None:
                return -1
            job = self.current
            if job is None or job.spec.protocol != "leased":
                return 0
            return job.renew(self.workers[wid].index)

    def release(self, wid: str, job_id: str, tids: list[int]) -> int:
        """Give back tasks the worker will not run; they go back to the queue at once."""
        with self.lock:
            rec = self._record(wid)
            job = self.jobs.get(job_id)
            if rec is None or job is None:
                return 0
            n = job.release(rec.index, tids)
            if n:
                self.changed.notify_all()
            return n

    def bye(self, wid: str) -> None:
        """A worker leaves on purpose (SIGTERM): it no longer counts as connected."""
        with self.lock:
            rec = self.workers.get(wid)
            if rec is not None:
                rec.left = True
        log.info("worker %s left", wid)

    # -- classic protocol --------------------------------------------------------------------
    def get_task_queue(self) -> ClassicTasks:
        return self.task_queue

    def get_result_queue(self) -> ClassicResults:
        return self.results_sink

    def _classic_worker(self, peer: str) -> int:
        """Who sent a classic result: tutorial workers send no identity, so the peer IP
        decides. It is our own worker if exactly one live worker has said hello from that
        IP (it keeps its identity); otherwise each peer IP counts as one worker."""
        index = self.classic_peers.get(peer)
        if index is None:
            now = time.monotonic()
            ours = [
                r for r in self.by_index if "name" in r.identity and peer in r.peers and r.live(now)
            ]
            if len(ours) == 1:
                index = ours[0].index
            else:
                wid = f"classic@{peer}"
                rec = self.workers.get(wid) or self._new_record(
                    wid, {"peer": peer, "protocol": "classic"}
                )
                index = rec.index
            self.classic_peers[peer] = index
        rec = self.by_index[index]
        rec.last_seen = time.monotonic()
        rec.peers.add(peer)
        return index

    def classic_result(self, item: Any, peer: str) -> None:
        """Account one tutorial-style result: ``'n * n = r'`` or the bare int ``n*n``."""
        with self.lock:
            job = self.current
            if job is None or job.spec.protocol != "classic":
                log.info("ignored a classic result from %s: no classic job is running", peer)
                return
            index = self._classic_worker(peer)
            tid, value = self._parse_classic(item)
            if tid is None:
                job.counts["stale"] += 1
                return
            job.accept(index, peer, [(tid, value)])
            if job.done:
                self._finish(job)

    def _parse_classic(self, item: Any) -> tuple[int | None, Any]:
        if isinstance(item, str):
            m = CLASSIC_RESULT.match(item)
            if not m:
                return None, item
            n = int(m.group(1))
            return self._classic_tid.get(n), int(m.group(3))
        if isinstance(item, int) and item >= 0:
            root = math.isqrt(item)
            return self._classic_tid.get(root), item
        return None, item

    # -- jobs ------------------------------------------------------------------------------
    def submit(self, spec: dict[str, Any], payloads: list[Any] | None = None) -> str:
        """Start a job from a spec (and optional explicit payloads); returns its id."""
        try:
            job_spec = make_spec(spec)
        except ValueError as exc:
            raise JobError(f"bad job spec: {exc}") from None
        if payloads is None:
            payloads = kinds.make_payloads(
                job_spec.kind, job_spec.tasks, job_spec.size, job_spec.seed
            )
        elif job_spec.protocol == "classic":
            raise JobError("classic jobs are built from a spec (distinct ints), not payloads")
        with self.lock:
            if self.current is not None and not self.current.done:
                raise JobError(f"job {self.current.id} is still running")
            job_id = f"{self.instance}-{next(self._job_numbers)}"
            job = Ledger(job_id, job_spec, list(payloads))
            self.jobs[job_id] = job
            while len(self.jobs) > self.history:
                self.jobs.pop(next(iter(self.jobs)))
            self.current = job
            if job_spec.protocol == "classic":
                self._start_classic(job)
            self.changed.notify_all()
        log.info(
            "job %s: %d %s tasks (%s, batch %d)",
            job_id,
            job.total,
            job_spec.kind,
            job_spec.protocol,
            job_spec.batch,
        )
        return job_id

    def _start_classic(self, job: Ledger) -> None:
        self._drain_task_queue()  # what a previous classic job left behind
        self.classic_peers = {}  # who is behind each peer IP is decided again per job
        self._classic_tid = {p: t for t, p in enumerate(job.payloads)}
        for payload in job.payloads:
            self.task_queue.put(payload)

    def _drain_task_queue(self) -> None:
        while True:
            try:
                self.task_queue.queue.get_nowait()
            except queue.Empty:
                return

    def _finish(self, job: Ledger) -> None:
        log.info("job %s finished: %s", job.id, job.progress())
        self.changed.notify_all()

    def progress(self, job_id: str | None = None) -> dict[str, Any]:
        with self.lock:
            job = self._job(job_id)
            return job.progress()

    def wait(self, job_id: str, seconds: float) -> dict[str, Any]:
        """Block until the job finishes or ``seconds`` pass; returns its progress."""
        deadline = time.monotonic() + seconds
        with self.lock:
            job = self._job(job_id)
            while not job.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.changed.wait(min(remaining, 0.25))
            return job.progress()

    def cancel(self, job_id: str, reason: str = "cancelled") -> dict[str, Any]:
        """End a job now: what is unfinished is buried (classic: lost)."""
        with self.lock:
            job = self._job(job_id)
            if not job.done:
                if job.spec.protocol == "classic":
                    self._drain_task_queue()
                job.stop(reason)
                self._finish(job)
            return job.progress()

    def report(self, job_id: str | None = None, results: bool = False) -> dict[str, Any]:
        """The JSON-ready report of a job (the last one by default)."""
        with self.lock:
            job = self._job(job_id)
        report.expected_values(job)  # may be slow (cpu): computed without holding the lock
        with self.lock:
            return report.build(job, self.by_index, self.identity, results=results)

    def status(self) -> dict[str, Any]:
        """Who is connected, and the current job."""
        now = time.monotonic()
        with self.lock:
            workers = [
                {
                    "id": r.wid,
                    "identity": r.identity,
                    "peers": sorted(r.peers - {""}),
                    "connected": r.live(now),
                    "left": r.left,
                    "last_seen_seconds": round(now - r.last_seen, 3),
                }
                for r in self.by_index
            ]
            job = self.current.progress() if self.current else None
        return {
            "master": self.identity,
            "uptime_seconds": round(time.time() - self.started, 3),
            "workers": workers,
            "job": job,
        }

    def ping(self) -> str:
        return self.instance

    def _job(self, job_id: str | None) -> Ledger:
        job = self.jobs.get(job_id) if job_id else self.current
        if job is None:
            raise JobError(f"no such job: {job_id}" if job_id else "no job has run yet")
        return job

    # -- housekeeping ------------------------------------------------------------------------
    def reap(self) -> int:
        """Expire overdue leases of the current job; wakes waiting workers if tasks came back."""
        with self.lock:
            job = self.current
            if job is None or job.done or job.spec.protocol != "leased":
                return 0
            n = job.expire()
            if n:
                log.warning(
                    "job %s: %d tasks from expired leases went back to the queue", job.id, n
                )
                self.changed.notify_all()
            if job.done:
                self._finish(job)
            return n
