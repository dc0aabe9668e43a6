"""One log line per peer per interval: a flood must not turn into a flood of log lines."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class PeerLogLimiter:
    """Lets one line per key (a peer IP) through per ``interval`` seconds, and says in the
    next line it lets through how many it held back in between.

    The table is pruned of keys quiet for an interval once it holds ``max_keys``, so that
    connections from many addresses cannot grow it without bound.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 10.0,
        max_keys: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self.interval = interval
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}  # key -> (time of its line, held back)

    def allow(self, key: str) -> int | None:
        """How many lines were held back if a line for ``key`` may go out now, else None."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last[0] < self.interval:
                self._last[key] = (last[0], last[1] + 1)
                return None
            if len(self._last) >= self._max_keys:
                self._last = {k: v for k, v in self._last.items() if now - v[0] < self.interval}
            self._last[key] = (now, 0)
            return 0 if last is None else last[1]

    def warning(self, key: str, msg: str, *args: object) -> None:
        """``logger.warning(msg, *args)`` unless ``key`` had its line in this interval."""
        held = self.allow(key)
        if held is None:
            return
        if held:
            msg += " (and %d more from %s since its last line, not logged)"
            args = (*args, held, key)
        self._log.warning(msg, *args)
