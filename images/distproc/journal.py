"""The master's journal: what it accepted, in a sqlite file that outlives the master.

What it keeps (the tables of ``journal_file.py``). At submit: the job's spec, and its payloads
if they were given explicitly. For each exchange, classic result, expiry or loss: every state
the master made final (ok, failed, dead, lost) as rows of ranges ``(job, first, count,
state)``, with the values only where the job keeps them (``results: stream``); the retries
waiting, with their last error and the attempts they spent; then one progress record: the job's
counters (duplicates, retries...) and the tally of the worker that sent them. All of it is
appended to one table, so that a commit writes one page or two (a row per table, updated in
place, took three: 57 us a commit against 19 us, measured). At the job's end: its per-task
bytes, packed as the master keeps them (``states.py``), and what its report lists; its rows go
(compaction), so a finished job costs the journal what it costs the master's memory. Jobs the
broker drops from its history (``history.HISTORY_BYTES``, in bytes) go from the journal too.

What it does not keep: leases. A task leased when the master died is pending again after
the replay with the attempts it had spent before that lease (the crash is not the task's
fault); a classic task taken when the master died is lost (``replay.py``).

Group commit, off the workers' path. The broker hands over what a call changed while it
holds its lock (``add``: a list swap and a few small copies, no I/O: about 10 us more under
the lock per exchange of 256 results, ``make bench``). The journal's own thread commits what
was handed over since its last transaction, at most one every ``COMMIT_GAP`` (2 ms): 8
exchanges or so a transaction, 2 workers at full speed. A worker's exchange does not wait
for it unless the journal falls ``LAG_CHANGES`` changes or ``LAG_ROWS`` rows behind.
Measured on 2 workers against the rate without a journal (``normal``): an exchange waiting
for its own commit, 50-70%; a thread committing as soon as anything was handed over (1.8
exchanges a transaction), 66-83%; this way, 75-100% (runs of a shared 2-core machine). What
it costs: results a worker heard "accepted" for, and that were not committed when the master
died (2 ms of them, or so), are pending after the replay and run again. Nothing is lost,
nothing is counted twice (the guarantee stays at-least-once execution, exactly-once
accounting); a crash only re-runs a little more than the leases it cut. Whatever a client is
told must not go back is committed before the call returns, by the calling thread itself: a
job's id (``submit``), its end (``wait``, ``cancel``), and every classic take and result
(at-most-once: a task served twice would be run twice; that makes classic tasks with a
journal cost two commits each).

``synchronous`` (``--journal-sync``), in WAL mode:

- ``normal`` (the default): a commit is written to the WAL, not fsynced; the WAL is synced
  at each checkpoint. A process crash (SIGKILL, OOM, a container killed) loses nothing that
  was committed: the bytes are in the kernel's page cache. A power loss or a kernel crash
  may lose the last transactions (never corrupt the file): their tasks are then pending
  again and run again, so nothing is lost, but the workers' answers are done twice.
- ``full``: each commit waits for an fsync of the WAL: nothing committed is lost even on
  power loss, at the price of one fsync per transaction (``make bench`` measures both).

The file itself, what it is and what is refused at start: ``journal_file.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .journal_file import MOVE_IT, JournalError, connect
from .states import Row

#: how far the commits may trail what the master accepted before an exchange waits for them:
#: bounds what a crash makes the workers run again (32 exchanges of 256 tasks; a commit
#: carries 1.8 at full speed) and the memory of what waits (a key holder's exchange may name
#: a million single ids: rows of one id each)
LAG_CHANGES = 32
LAG_ROWS = 100_000
#: the journal's thread commits at most this often: 2 ms let a transaction carry some 8
#: exchanges of 2 workers at full speed, where committing as soon as one was handed over
#: carried 1.8 and cost 2 workers a quarter of their rate (the GIL handed to the writer and
#: back for each transaction)
COMMIT_GAP = 0.002


@dataclass
class JobRecord:
    """One job as the journal has it (``replay.py`` makes a ledger of it)."""

    seq: int
    id: str
    spec: dict[str, Any]
    payloads: Any  # a list (explicit, running), a dict (explicit, ended) or None
    submitted: float
    ended: dict[str, Any] | None
    packed: bytes | None
    #: a running job's changes in order: a ``Row``, or a dict (``progress``: "counts",
    #: "wrong", "started", "tallies": {wid: [identity or None, tally]})
    changes: Callable[[], Iterator[Row | dict[str, Any]]] = lambda: iter(())


@dataclass
class Stats:
    """What the journal cost so far (``status``, the bench)."""

    commits: int = 0
    changes: int = 0  # what the broker handed over (a call each)
    rows: int = 0
    seconds: float = 0.0  # in commits, the transaction written and synced
    longest: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"commits": self.commits, "changes": self.changes, "rows": self.rows,
                "commit_seconds": round(self.seconds, 6),
                "longest_commit_seconds": round(self.longest, 6)}  # fmt: skip


def _fail_stop(exc: BaseException) -> None:
    raise exc


class Journal:
    """An open journal: ``load`` once at start, then ``add`` and ``commit``."""

    def __init__(self, conn: sqlite3.Connection, path: str, sync: str) -> None:
        self._conn = conn
        self.path = path
        self.sync = sync
        self._ops: list[tuple[Any, ...]] = []
        self._added = 0  # changes handed over so far
        self._written = 0  # of those, committed
        self._rows_waiting = 0  # task rows handed over, not yet taken to be written
        self._ops_lock = threading.Lock()  # add() runs under the broker's lock: kept short
        self._work = threading.Condition(self._ops_lock)  # the writer waits on it
        self._idle = False  # the writer waits for changes (not for its next turn)
        self._write_lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._job_seq: dict[str, int] = {}
        self._tallied: set[tuple[int, str]] = set()
        self.stats = Stats()
        self._closed = False
        #: what a failed commit does: raise (the default), or the master's fail-stop
        self.on_failure: Callable[[BaseException], None] = _fail_stop

    # -- reading ------------------------------------------------------------------------
    def load(self) -> list[JobRecord]:
        """Every job in the journal, oldest first; a row that makes no sense is refused."""
        out = []
        query = "SELECT seq, id, spec, payloads, submitted, ended, packed FROM jobs ORDER BY seq"
        try:
            for seq, jid, spec, payloads, submitted, ended, packed in list(
                self._conn.execute(query)
            ):
                rec = JobRecord(seq, jid, json.loads(spec), _unpickle(payloads), submitted,
                                _json(ended), packed)  # fmt: skip
                if rec.ended is None:
                    rec.changes = lambda seq=seq: self._changes(seq)
                self._job_seq[jid] = seq
                out.append(rec)
        except (sqlite3.Error, ValueError, TypeError, pickle.UnpicklingError, EOFError) as exc:
            raise JournalError(f"{self.path}: a job in the journal is unreadable ({exc}): "
                               f"refusing to guess; {MOVE_IT}") from None  # fmt: skip
        return out

    def _changes(self, seq: int) -> Iterator[Row | dict[str, Any]]:
        query = "SELECT first, count, state, attempts, error, worker, peer, vals, progress " \
                "FROM changes WHERE job = ? ORDER BY rowid"  # fmt: skip
        try:
            for *row, vals, progress in self._conn.execute(query, (seq,)):
                if progress is not None:
                    kept = json.loads(progress)
                    self._tallied.update((seq, wid) for wid in kept["tallies"])
                    yield kept
                    continue
                first, count, state, attempts, error, worker, peer = row
                if not all(isinstance(x, int) for x in (first, count, state)) or not isinstance(
                    attempts, bytes
                ):
                    raise TypeError(f"a change without its range: {row}")
                yield (first, count, state, attempts, error, worker or "", peer or "",
                       _unpickle(vals))  # fmt: skip
        except (sqlite3.Error, ValueError, pickle.UnpicklingError, EOFError, TypeError) as exc:
            raise JournalError(f"{self.path}: a change is unreadable ({exc}): refusing to "
                               f"guess; {MOVE_IT}") from None  # fmt: skip

    # -- writing ------------------------------------------------------------------------
    def add(self, op: tuple[Any, ...]) -> int:
        """Hand over one change (under the broker's lock: no I/O here); returns the number
        that ``commit`` waits for."""
        with self._ops_lock:
            self._ops.append(op)
            self._added += 1
            if op[0] == "rows":
                self._rows_waiting += len(op[2])
            if self._idle:
                self._work.notify()
            return self._added

    def lagging(self, seq: int) -> bool:
        """Whether the commits trail change ``seq`` by more than ``LAG_CHANGES`` changes, or
        more than ``LAG_ROWS`` rows wait: then the caller waits for them (``commit``)."""
        return seq - self._written > LAG_CHANGES or self._rows_waiting > LAG_ROWS

    def start(self) -> None:
        """Commit from a thread of its own from now on: ``add`` returns at once, and each
        transaction carries whatever was handed over since the one before, at most one
        every ``COMMIT_GAP`` seconds. A caller of ``commit`` does not wait for it: it writes
        what waits itself (a hand-over to the writer and back cost a classic task, which
        waits for two commits, a third of its rate)."""
        self._writer = threading.Thread(target=self._write_on, name="journal", daemon=True)
        self._writer.start()

    def _write_on(self) -> None:
        last = 0.0
        while True:
            with self._ops_lock:
                while not self._ops and not self._closed:
                    self._idle = True
                    self._work.wait()
                    self._idle = False
                due = last + COMMIT_GAP
                while not self._closed and (left := due - time.monotonic()) > 0:
                    self._work.wait(left)
                if self._closed:
                    return
            try:
                self._commit_pending()
            except Exception:  # on_failure has had it (the master stops)
                return
            last = time.monotonic()

    def commit(self, upto: int) -> None:
        """Return once change ``upto`` is committed: write every change handed over so far,
        unless another thread is writing it (group commit: a thread that finds its change
        written returns at once)."""
        if self._written < upto:
            self._commit_pending(upto)

    def _commit_pending(self, upto: int = 0) -> None:
        with self._write_lock:
            if (upto and self._written >= upto) or self._closed:
                return
            with self._ops_lock:
                ops, self._ops = self._ops, []
                last, self._rows_waiting = self._added, 0
            if not ops:
                return
            t0 = time.perf_counter()
            try:
                rows = self._write(ops)
            except Exception as exc:
                self.on_failure(exc)
                raise
            took = time.perf_counter() - t0
            self._written = last
            s = self.stats
            s.commits += 1
            s.changes += len(ops)
            s.rows += rows
            s.seconds += took
            s.longest = max(s.longest, took)

    def flush(self) -> None:
        """Commit everything handed over so far."""
        self.commit(self._added)

    def _write(self, ops: list[tuple[Any, ...]]) -> int:
        """One transaction; returns how many task rows it wrote. A running job's changes are
        appended to one table (its rows, then one progress record per job), so a commit of
        one exchange touches one page or two, not one per table."""
        c = self._conn
        rows: list[tuple[Any, ...]] = []
        progress: dict[int, dict[str, Any]] = {}
        written = 0
        c.execute("BEGIN")
        try:
            for op in ops:
                if op[0] == "rows":
                    written += self._rows_op(op, rows, progress)
                    continue
                self._append(rows, progress)
                if op[0] == "job":
                    self._job(*op[1:])
                elif op[0] == "end":
                    self._end(*op[1:])
                elif op[0] == "drop":
                    self._drop(op[1])
                else:
                    raise ValueError(f"unknown journal change {op[0]!r}")
            self._append(rows, progress)
            c.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                c.execute("ROLLBACK")
            raise
        return written

    def _rows_op(self, op: tuple[Any, ...], rows: list[tuple[Any, ...]],
                 progress: dict[int, dict[str, Any]]) -> int:  # fmt: skip
        _, jid, new, counts, wrong, started, tallies = op
        seq = self._job_seq.get(jid)
        if seq is None:  # dropped from the history meanwhile
            return 0
        rows += [(seq, first, count, state, attempts, error, worker, peer,
                  None if vals is None else _pickled(vals), None)
                 for first, count, state, attempts, error, worker, peer, vals in new]  # fmt: skip
        kept = progress.get(seq)
        if kept is None:
            kept = progress[seq] = {"tallies": {}}
        kept.update(counts=counts, wrong=wrong, started=started)
        for wid, identity, tally in tallies:  # a worker's identity once per job and master
            known = (seq, wid) in self._tallied
            kept["tallies"][wid] = [None if known else plain(identity), tally]
        return len(new)

    def _append(self, rows: list[tuple[Any, ...]], progress: dict[int, dict[str, Any]]) -> None:
        """Write what the rows ops so far gathered: task rows, then each job's progress."""
        for seq, kept in progress.items():
            rows.append((seq, None, None, None, None, None, None, None, None,
                         json.dumps(kept, default=repr)))  # fmt: skip
            self._tallied.update((seq, wid) for wid in kept["tallies"])
        if rows:
            self._conn.executemany(
                "INSERT INTO changes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )
        rows.clear()
        progress.clear()

    def _job(self, jid: str, spec: dict[str, Any], blob: bytes | None,
             submitted: float) -> None:  # fmt: skip
        """A job submitted: ``blob`` is its explicit payloads, pickled by ``submit`` (where
        a list that does not pickle again is refused, not here, where it would stop us)."""
        cur = self._conn.execute(
            "INSERT INTO jobs (id, spec, payloads, submitted) VALUES (?, ?, ?, ?)",
            (jid, json.dumps(spec), blob, submitted),
        )
        self._job_seq[jid] = int(cur.lastrowid or 0)

    def _end(self, jid: str, ended: dict[str, Any], packed: bytes,
             named: dict[int, Any] | None) -> None:  # fmt: skip
        """The job ended: what its report needs, then its rows go."""
        seq = self._job_seq.get(jid)
        if seq is None:
            return
        blob = None if named is None else _pickled(named)
        for tally in ended["tallies"]:
            tally[1] = plain(tally[1])
        self._conn.execute(
            "UPDATE jobs SET ended = ?, packed = ?, payloads = ? WHERE seq = ?",
            (json.dumps(ended, default=repr), packed, blob, seq),
        )
        self._forget_rows(seq)

    def _drop(self, jids: list[str]) -> None:
        """Jobs the broker's history let go."""
        for jid in jids:
            seq = self._job_seq.pop(jid, None)
            if seq is not None:
                self._conn.execute("DELETE FROM jobs WHERE seq = ?", (seq,))
                self._forget_rows(seq)

    def _forget_rows(self, seq: int) -> None:
        self._conn.execute("DELETE FROM changes WHERE job = ?", (seq,))
        self._tallied = {k for k in self._tallied if k[0] != seq}

    def size(self) -> int:
        """Bytes on disk: the file and its WAL."""
        return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal")
                   if os.path.exists(p))  # fmt: skip

    def close(self) -> None:
        """Commit what is left and close (a clean stop checkpoints the WAL into the file)."""
        with self._write_lock:
            if self._closed:
                return
            with self._ops_lock:
                self._closed = True
                ops, self._ops = self._ops, []
                self._work.notify_all()
            if ops:
                with contextlib.suppress(Exception):
                    self._write(ops)
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()


UNREADABLE = "unreadable"  # the key of a worker identity kept as its repr (``plain``)


def plain(identity: Any) -> Any:
    """A worker's identity as JSON can keep it: as it is, or its repr under ``UNREADABLE``.
    A key holder says what it likes in its ``hello`` (a dict holding itself, tuple keys):
    nothing a worker says may make a commit fail, which would stop the master."""
    try:
        json.dumps(identity, default=repr)
        return identity
    except (ValueError, TypeError, RecursionError):
        return {UNREADABLE: repr(identity)[:1000]}


def _pickled(values: Any) -> bytes:
    """Values as the journal keeps them. A value that came in pickled may not pickle again
    (its ``__reduce__`` may raise): it is kept as its repr, which is what the results file
    shows of a value JSON cannot encode."""
    try:
        return pickle.dumps(values, 5)
    except Exception:
        return pickle.dumps(_reprs(values), 5)


def _reprs(values: Any) -> Any:
    if isinstance(values, dict):
        return {k: _repr_or(v) for k, v in values.items()}
    return [_repr_or(v) for v in values]


def _repr_or(value: Any) -> Any:
    try:
        pickle.dumps(value, 5)
        return value
    except Exception:
        try:
            return repr(value)[:1000]
        except Exception:
            return "<not representable>"


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _unpickle(blob: bytes | None) -> Any:
    return None if blob is None else pickle.loads(blob)


def open_journal(path: str, sync: str = "normal") -> Journal:
    """Open (or create) the journal at ``path``; raises ``JournalError`` with what to do when
    it can't be used (``journal_file.connect``)."""
    return Journal(connect(path, sync), path, sync)
