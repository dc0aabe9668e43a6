"""Chaos events as marks on the dashboard's chart: a file of JSON lines beside the cluster's
key (``state_dir``), appended by ``orchestrate chaos`` and tailed by the dashboard's poller.

A file rather than a connection: the two commands run apart (a terminal and a browser), and
neither must wait for the other. Each line is ``{"t": epoch seconds, "kind": "chaos",
"label": ...}``. The file is bounded: past ``MAX_BYTES`` it starts again (the tail notices
and reads from the start). Both sides must use the same state directory (the current
directory's ``.cluster/``, or ``DISTPROC_STATE_DIR``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..state import state_dir

MARKS_FILE = "chaos-marks.jsonl"
MAX_BYTES = 256 * 1024
MAX_LINE = 1000  # characters of a label kept
MAX_READ = 64 * 1024  # bytes read per poll at most: a poll stays short whatever was written


def marks_path(cluster_name: str) -> Path:
    return state_dir(cluster_name) / MARKS_FILE


def append_mark(path: Path, kind: str, label: str, t: float | None = None) -> None:
    """One mark, appended (the file starts again past ``MAX_BYTES``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "w" if path.exists() and path.stat().st_size > MAX_BYTES else "a"
    line = json.dumps({"t": time.time() if t is None else t, "kind": kind,
                       "label": label[:MAX_LINE]})  # fmt: skip
    with path.open(mode, encoding="utf-8") as f:
        f.write(line + "\n")


class MarksTail:
    """The marks appended to ``path`` since the last ``new()`` (since it was made, at
    first: a dashboard shows the chaos of its own time, not of earlier runs)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def new(self) -> list[dict[str, Any]]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            self.offset = 0
            return []
        if size < self.offset:  # started again
            self.offset = 0
        with self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read(MAX_READ)
        end = chunk.rfind(b"\n") + 1  # whole lines only: a line being written waits
        self.offset += end
        out = []
        for raw in chunk[:end].splitlines():
            try:
                mark = json.loads(raw)
                out.append({"t": float(mark["t"]), "kind": str(mark["kind"]),
                            "label": str(mark["label"])[:MAX_LINE]})  # fmt: skip
            except (ValueError, KeyError, TypeError):
                continue  # not ours: skipped, not shown
        return out
