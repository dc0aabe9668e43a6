"""Connecting to a master: retries with exponential backoff, and fresh proxies on reconnect.

A ``BaseProxy`` keeps its connection in a thread-local that is shared by every proxy for the
same address in the process (``BaseProxy._address_to_local``), and it never reconnects: after
the master restarts, even a brand-new proxy reuses the dead socket (CPython gh-87495,
gh-78947). ``forget(address)`` drops that cache, so the next manager starts clean.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from multiprocessing.managers import BaseManager, BaseProxy
from typing import Any

from .tcp import nodelay_clients

log = logging.getLogger("distproc.client")

# What a dead or unreachable master looks like from a proxy call.
LINK_ERRORS = (OSError, EOFError, BrokenPipeError, ConnectionError)


class Unreachable(RuntimeError):
    """The master could not be reached within the connect timeout."""


class ClientManager(BaseManager):
    """The client side: the same typeids as the master, no callables."""


ClientManager.register("get_broker")
ClientManager.register("get_task_queue")
ClientManager.register("get_result_queue")


def parse_address(text: str, default_port: int = 5000) -> tuple[str, int]:
    """``host:port`` (or ``host``) to a tuple."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"bad address {text!r}: expected host:port") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"bad address {text!r}: the port must be 0-65535")
    return host or "127.0.0.1", number


def forget(address: tuple[str, int]) -> None:
    """Drop the proxies' cached connections to ``address`` (see the module docstring)."""
    with BaseProxy._mutex:
        entry = BaseProxy._address_to_local.pop(address, None)
    if entry is not None:
        conn = getattr(entry[0], "connection", None)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()


def backoff(attempt: int, base: float = 0.1, cap: float = 2.0) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(cap, base * (2**attempt)))


def connect(
    address: tuple[str, int], authkey: bytes, timeout: float = 60.0, what: str = "master"
) -> ClientManager:
    """A connected manager, retrying with backoff until ``timeout`` seconds pass.

    A wrong authkey is not retried: it raises ``multiprocessing.AuthenticationError`` at once.
    """
    nodelay_clients()
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        forget(address)
        manager = ClientManager(address=address, authkey=authkey)
        try:
            manager.connect()
            return manager
        except LINK_ERRORS as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unreachable(
                    f"{what} at {address[0]}:{address[1]} unreachable after {timeout:.0f}s: {exc}"
                ) from None
            if attempt == 0 or attempt % 10 == 0:
                log.info("waiting for %s at %s:%d (%s)", what, *address, exc)
            time.sleep(min(backoff(attempt), remaining))
            attempt += 1


def broker(manager: ClientManager) -> Any:
    """The broker proxy of a connected manager."""
    return manager.get_broker()
