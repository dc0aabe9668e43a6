"""The classic protocol: the tutorial's task and result queues, served from the job ledger.

The task queue is not a ``queue.Queue`` filled up front (10M ints would cost 360 MB): each
``get`` takes the next pending task of the running classic job. The master remembers which
connection took each task (``Takers``); when that connection closes before a result for the
task arrives, the task is counted ``lost`` at once, with who took it. That is the
tutorial's rule, at-most-once, shown as it happens instead of as a hang.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import TYPE_CHECKING, Any

from .calls import CallError
from .kinds import MAX_INT_BITS

if TYPE_CHECKING:
    from .broker import Broker

CLASSIC_RESULT = re.compile(r"^\s*(-?\d{1,30})\s*\*\s*(-?\d{1,30})\s*=\s*(-?\d{1,60})\s*$")


class ClassicTasks:
    """The classic task queue proxy's referent: ``get`` takes a task of the classic job."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        return self._broker.classic_take(block, timeout)

    def get_nowait(self) -> Any:
        return self.get(False)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        raise CallError(
            "the master makes the tasks: start a classic job with "
            "`distproc submit --protocol classic --tasks N` instead of putting them"
        )

    def qsize(self) -> int:
        return self._broker.classic_pending()

    def empty(self) -> bool:
        return self.qsize() == 0


class ClassicResults:
    """The classic result queue: ``put`` is accounted at once, with the peer it came from."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self._broker.classic_result(item)

    def put_nowait(self, item: Any) -> None:
        self.put(item)

    def qsize(self) -> int:
        return 0

    def empty(self) -> bool:
        return True


def parse_result(item: Any, index_of: Any) -> tuple[int | None, Any]:
    """``(task id, value)`` of a tutorial result: ``'n * n = m'`` or the bare int ``n*n``."""
    if isinstance(item, str):
        m = CLASSIC_RESULT.match(item)
        if not m:
            return None, item
        return index_of(int(m.group(1))), int(m.group(3))
    # a square of a payload (kinds.MAX_INT_BITS at most) has at most twice its bits
    if type(item) is int and item >= 0 and item.bit_length() <= 2 * MAX_INT_BITS:
        return index_of(math.isqrt(item)), item  # (isqrt of a 10M-bit int froze the master 28 s)
    return None, item


class Takers:
    """Which connection took which classic task, until its result arrives."""

    def __init__(self) -> None:
        self._by_conn: dict[int, dict[int, str]] = {}  # connection -> {task: peer}
        self._conn_of: dict[int, int] = {}  # task -> connection

    def took(self, conn: int, tid: int, peer: str) -> None:
        self._by_conn.setdefault(conn, {})[tid] = peer
        self._conn_of[tid] = conn

    def answered(self, tid: int) -> None:
        conn = self._conn_of.pop(tid, None)
        if conn is not None:
            self._by_conn.get(conn, {}).pop(tid, None)

    def closed(self, conn: int) -> dict[int, str]:
        """The tasks that ``conn`` took and never answered: lost with it."""
        taken = self._by_conn.pop(conn, {})
        for tid in taken:
            self._conn_of.pop(tid, None)
        return taken

    def held_by_peer(self) -> Counter[str]:
        """Tasks taken and not answered yet, by the peer IP that took them."""
        return Counter(peer for taken in self._by_conn.values() for peer in taken.values())

    def clear(self) -> None:
        self._by_conn.clear()
        self._conn_of.clear()
