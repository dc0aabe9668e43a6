"""The journal's file: what it is (its tables, sqlite's header), how it is opened, and what is
refused at start.

It stands alone because all of it runs once, before the master serves, and each refusal here
ends the start with what to do (exit 2); ``journal.py`` then only reads and writes a file that
passed these checks.

The file is the master's alone while it runs (``locking_mode=EXCLUSIVE``: a second master on
the same file is refused at start). It says what it is in sqlite's header
(``application_id``, ``user_version``): a file that is not ours, is corrupt or was written by
another schema is refused at start (exit 2), never guessed at. Pickled payloads and values
are read back only from a file that passed those checks; the journal is as trusted as the
master's own volume.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

log = logging.getLogger("distproc.master")

SCHEMA = 1
APPLICATION_ID = 0x64707263  # "dprc": sqlite's header names the file's application
SYNC_MODES = ("normal", "full")
BUSY_SECONDS = 2.0  # a master still letting the file go (a restart in progress)
WAL_LIMIT = 64 * 2**20  # the WAL is truncated to this after a checkpoint

_TABLES = (
    """CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY,   -- submission order
        id TEXT NOT NULL UNIQUE,
        spec TEXT NOT NULL,        -- JSON, JobSpec.as_dict()
        payloads BLOB,             -- pickle: explicit payloads (list); at the end only the
                                   -- ones the report names (dict); NULL: built from the spec
        submitted REAL NOT NULL,   -- wall clock
        ended TEXT,                -- JSON, at the end: what the report lists (replay.py)
        packed BLOB                -- at the end: zlib of every task's state and attempts
    )""",
    """CREATE TABLE changes (       -- a running job's changes, appended (rowid order)
        job INTEGER NOT NULL,      -- jobs.seq
        first INTEGER,             -- a range of ids...
        count INTEGER,
        state INTEGER,             -- states.py: 2 ok, 3 failed, 4 dead, 5 lost (final);
                                   -- 0 pending again (a retry), 1 taken (classic)
        attempts BLOB,             -- one byte per id, or one byte for every id
        error TEXT,
        worker TEXT,
        peer TEXT,
        vals BLOB,                 -- pickle: the values of an ok row, if the job keeps them
        progress TEXT              -- ...or, instead of a range, JSON: the job's counters, its
                                   -- start, the tallies of the workers that sent results
    )""",
)


class JournalError(ValueError):
    """A journal the master will not use: refused at start (exit 2), nothing changed."""


MOVE_IT = "move the file away to start without it (its jobs are then forgotten)"


def connect(path: str, sync: str = "normal") -> sqlite3.Connection:
    """The journal's file at ``path``, opened (or created), checked and held for this master;
    raises ``JournalError`` with what to do when it can't be used: a missing directory, a path
    that can't be written, a file that is not a journal, is corrupt, is another schema's, or is
    in use by another master."""
    if sync not in SYNC_MODES:
        raise JournalError(f"--journal-sync must be {' or '.join(SYNC_MODES)}, not {sync!r}")
    where = Path(path)
    if not where.parent.is_dir():
        raise JournalError(f"--journal {path}: the directory {where.parent} does not exist")
    if where.exists() and not where.is_file():
        raise JournalError(f"--journal {path}: not a file")
    try:
        conn = sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None,
                               check_same_thread=False)  # fmt: skip
    except sqlite3.Error as exc:
        raise JournalError(f"--journal {path}: cannot open it: {exc}") from None
    try:
        _prepare(conn, path, sync)
    except JournalError:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        raise JournalError(_explain(path, exc)) from None
    return conn


def _explain(path: str, exc: sqlite3.Error) -> str:
    text = str(exc)
    if "locked" in text:
        return f"--journal {path}: in use by another master (its lock is held): stop it first"
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return f"--journal {path}: not a sqlite database, or a corrupt one ({text}): " \
               f"refusing to guess; {MOVE_IT}"  # fmt: skip
    return f"--journal {path}: cannot use it: {text}"


def _prepare(conn: sqlite3.Connection, path: str, sync: str) -> None:
    """Check what the file is, create the tables in a new one, and take it for ourselves."""
    conn.execute("PRAGMA locking_mode = EXCLUSIVE")  # before WAL: no shared-memory index
    app = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if app == 0 and not tables:
        fresh = True
    elif app != APPLICATION_ID:
        raise JournalError(f"--journal {path}: a sqlite database, but not a distproc journal "
                           f"(application id {app:#x}, tables {sorted(tables)}): refusing to "
                           "use it; give a path of its own")  # fmt: skip
    elif version < SCHEMA:
        raise JournalError(f"--journal {path}: written by an older distproc (schema {version}, "
                           f"this master reads {SCHEMA}): finish its jobs with that version, "
                           f"or {MOVE_IT}")  # fmt: skip
    elif version > SCHEMA:
        raise JournalError(f"--journal {path}: written by a newer distproc (schema {version}, "
                           f"this master reads {SCHEMA}): run that version on it")  # fmt: skip
    else:
        fresh = False
        problems = [r[0] for r in conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise JournalError(f"--journal {path}: corrupt ({'; '.join(problems[:3])}): "
                               f"refusing to guess; {MOVE_IT}")  # fmt: skip
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        raise JournalError(f"--journal {path}: sqlite would not use WAL mode here ({mode})")
    conn.execute(f"PRAGMA synchronous = {sync.upper()}")
    conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
    conn.execute("BEGIN IMMEDIATE")  # the write lock, held from here on (EXCLUSIVE mode)
    try:
        if fresh:
            for ddl in _TABLES:
                conn.execute(ddl)
        else:
            missing = {"jobs", "changes"} - tables
            if missing:
                raise JournalError(f"--journal {path}: corrupt: no table {sorted(missing)}; "
                                   f"{MOVE_IT}")  # fmt: skip
        # a write now, so that a file we may read but not write is refused here, not later
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    log.info("journal %s (%s, synchronous %s)", path, "new" if fresh else "existing", sync)
