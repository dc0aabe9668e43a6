"""The worker side of the classic protocol (for jobs that ask for it): one ``get`` and one
``put`` per task, as the tutorial does. The master side is ``classic.py``."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


def classic_loop(
    manager: Any, stopping: threading.Event, still_classic: Callable[[], bool] | None
) -> None:
    """The tutorial's loop: no ids, no leases. ``still_classic`` (when the worker follows
    the master's job) is asked whenever the queue stays empty for a second; False ends it."""
    tasks = manager.get_task_queue()
    results = manager.get_result_queue()
    while not stopping.is_set():
        try:
            n = tasks.get(timeout=1)
        except queue.Empty:
            if still_classic is not None and not still_classic():
                return
            continue
        results.put("%d * %d = %d" % (n, n, n * n))  # noqa: UP031 (the tutorial's format)
