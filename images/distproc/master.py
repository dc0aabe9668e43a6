"""The master process: one broker served over TCP by a guarded manager server."""

from __future__ import annotations

import logging
import os
import threading

from .broker import Broker
from .classic import ClassicResults, ClassicTasks
from .journal import open_journal
from .memory import pin_mmap_threshold
from .server import GuardedServer, MasterManager, ServerLimits, make_server

log = logging.getLogger("distproc.master")

_broker: Broker | None = None


# Module-level callables, never lambdas: the registry then pickles by reference and works
# under every start method (fork, spawn, forkserver).
def _get_broker() -> Broker:
    assert _broker is not None, "the master has not started"
    return _broker


def get_task_queue() -> ClassicTasks:
    return _get_broker().get_task_queue()


def get_result_queue() -> ClassicResults:
    return _get_broker().get_result_queue()


BROKER_METHODS = (
    "hello",
    "exchange",
    "renew",
    "release",
    "bye",
    "submit",
    "progress",
    "wait",
    "cancel",
    "report",
    "status",
    "ping",
)
MasterManager.register("get_broker", callable=_get_broker, exposed=BROKER_METHODS)
MasterManager.register(
    "get_task_queue",
    callable=get_task_queue,
    exposed=("get", "get_nowait", "put", "qsize", "empty"),
)
MasterManager.register(
    "get_result_queue", callable=get_result_queue, exposed=("put", "put_nowait", "qsize", "empty")
)


class Master:
    """A running master: ``start()`` serves in background threads, ``stop()`` ends them."""

    def __init__(
        self,
        host: str,
        port: int,
        authkey: bytes,
        reap_interval: float = 0.2,
        limits: ServerLimits | None = None,
        results_dir: str | None = None,
        journal: str | None = None,
        journal_sync: str = "normal",
    ) -> None:
        global _broker
        pin_mmap_threshold()  # finished jobs' arrays go back to the system (memory.py)
        self.journal = open_journal(journal, journal_sync) if journal else None
        if self.journal is not None:
            self.journal.on_failure = _journal_failed
        self.broker = _broker = Broker(results_dir=results_dir, journal=self.journal)
        self.server: GuardedServer = make_server((host, port), authkey, limits)
        self.server.add_disconnect_hook(self.broker.connection_closed)
        self.address = self.server.address
        self.reap_interval = reap_interval
        self._stopping = threading.Event()

    def start(self) -> Master:
        threading.Thread(target=self.server.serve_forever, name="server", daemon=True).start()
        threading.Thread(target=self._reaper, name="reaper", daemon=True).start()
        log.info("master %s listening on %s:%d", self.broker.instance, *self.address)
        return self

    def _reaper(self) -> None:
        while not self._stopping.wait(self.reap_interval):
            try:
                self.broker.reap()
            except Exception:  # the reaper must outlive any one bad job
                log.exception("reaper failed")

    def stop(self) -> None:
        self._stopping.set()
        stop_event = getattr(self.server, "stop_event", None)
        if stop_event is not None:
            stop_event.set()
        self.server.listener.close()
        if self.journal is not None:
            self.journal.close()


def _journal_failed(exc: BaseException) -> None:
    """A commit failed (a full or vanished disk...): the master stops at once, as a crash
    would. What it accepted is on disk up to the last commit, and the workers send again
    what was not; running on without the journal would break that promise silently."""
    log.critical("the journal could not be written (%s: %s): the master stops; start it "
                 "again on the same journal to resume from its last commit",
                 type(exc).__name__, exc)  # fmt: skip
    logging.shutdown()
    os._exit(1)
