"""Where result values go once checked: dropped, or streamed to a file beside the master.

The master keeps a state per finished task and nothing more (see ``ledger.py``): holding
every value made memory grow with what is done (three 1M-task jobs left the master at 149,
274, then 392 MB resident; a 10M-task job got a 256 MiB container OOM-killed). A job asks
for its values with ``results: stream``: each final task is then appended to
``<results_dir>/<job id>.jsonl`` as one JSON line, and ``report --results`` reads it back.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

#: A report lists at most this many results inline, from a file of at most this many bytes;
#: past that, read the file. 1,000,000 small rows in one reply took the master to 1.6 GB.
MAX_INLINE_RESULTS = 100_000
MAX_INLINE_BYTES = 16 * 2**20


class ResultsUnavailable(ValueError):
    """``--results`` asked of a job whose values were dropped, or are too many to list."""


class ResultSink:
    """Drops values: counts what it was given, keeps nothing."""

    mode = "drop"
    path: str | None = None

    def __init__(self) -> None:
        self.written = 0

    def write(self, tid: int, state: str, value: Any, worker: str, peer: str, attempts: int,
              error: str = "") -> None:  # fmt: skip
        self.written += 1

    def close(self) -> None:
        """Nothing buffered."""

    def flush(self) -> None:
        """Nothing buffered."""

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "path": self.path, "written": self.written}

    def read(self) -> Iterator[dict[str, Any]]:
        raise ResultsUnavailable(
            "this job's result values were dropped after checking: run it with "
            "results: stream (submit --results) to keep them"
        )


class StreamSink(ResultSink):
    """Appends one JSON line per final task; a value JSON can't encode is written as repr."""

    mode = "stream"

    def __init__(self, directory: str | None, job_id: str) -> None:
        super().__init__()
        folder = Path(directory or tempfile.gettempdir())
        folder.mkdir(parents=True, exist_ok=True)
        self.path = str(folder / f"distproc-{job_id}.jsonl")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._file: TextIO | None = open(fd, "w", encoding="utf-8")  # noqa: SIM115

    @classmethod
    def reopen(cls, path: str, written: int) -> StreamSink:
        """The sink of a finished job replayed from a journal: its file, read-only."""
        sink = cls.__new__(cls)
        ResultSink.__init__(sink)
        sink.path, sink.written, sink._file = path, written, None
        return sink

    def write(self, tid: int, state: str, value: Any, worker: str, peer: str, attempts: int,
              error: str = "") -> None:  # fmt: skip
        if self._file is None:
            return
        line = {"id": tid, "state": state, "value": value, "worker": worker, "peer": peer,
                "attempts": attempts}  # fmt: skip
        if error:
            line["error"] = error
        try:
            text = json.dumps(line, default=repr)
        except (ValueError, TypeError, RecursionError):  # a huge int, a tuple key, a cycle...
            line["value"] = repr(value)[:MAX_REPR] if _repr_ok(value) else "<not representable>"
            text = json.dumps(line)
        self._file.write(text + "\n")
        self.written += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def read(self) -> Iterator[dict[str, Any]]:
        """The rows written so far (``flush`` first, under the lock; read outside it)."""
        try:
            size = os.path.getsize(self.path)
        except OSError as exc:  # a job replayed from a journal: its file may be gone
            raise ResultsUnavailable(f"cannot read {self.path}: {exc.strerror}") from None
        if self.written > MAX_INLINE_RESULTS or size > MAX_INLINE_BYTES:
            raise ResultsUnavailable(
                f"{self.written:,} results ({size:,} bytes) are too many to list in a report "
                f"(at most {MAX_INLINE_RESULTS:,} rows, {MAX_INLINE_BYTES // 2**20} MiB): "
                f"read {self.path} on the master"
            )
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)


MAX_REPR = 1000


def _repr_ok(value: Any) -> bool:
    try:
        repr(value)
    except Exception:
        return False
    return True


def sink_for(mode: str, directory: str | None, job_id: str) -> ResultSink:
    """The sink a job's ``results`` field asks for."""
    return StreamSink(directory, job_id) if mode == "stream" else ResultSink()
