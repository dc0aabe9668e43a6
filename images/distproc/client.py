"""Connecting to a master: retries with exponential backoff, and fresh proxies on reconnect.

A ``BaseProxy`` keeps its connection in a thread-local that is shared by every proxy for the
same address in the process (``BaseProxy._address_to_local``), and it never reconnects: after
the master restarts, even a brand-new proxy reuses the dead socket (CPython gh-87495,
gh-78947). ``forget(address)`` drops that cache, so the next manager starts clean.

The stdlib client reads with no timeout: against a listener that accepts and never answers,
``manager.connect()`` blocks forever. Our connection factory (installed for managers and
proxies alike) bounds the TCP connect, the handshake and the reply to the first request by
the connect timeout, then lifts the bound, so that later long calls (an exchange that waits
for tasks, ``wait()``, the classic ``get(timeout=...)``) are never cut short.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import struct
import threading
import time
from multiprocessing import connection
from multiprocessing.managers import BaseManager
from typing import Any

from .stdlib_private import install_client, proxy_connection_cache
from .tcp import socket_of

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


# The bound on a connection opened outside connect() (a proxy's own, later): connect() sets
# it to its timeout. Inside connect(), the time left until its deadline bounds instead.
link_timeout = 60.0
_connecting = threading.local()


def _set_io_timeout(sock: socket.socket, seconds: float) -> None:
    """SO_RCVTIMEO/SO_SNDTIMEO (0: none). A socket timeout would not do: ``Connection``
    reads the descriptor with ``os.read``, which a non-blocking socket makes fail at once;
    with these options a blocking read fails with EAGAIN (an OSError) after ``seconds``."""
    whole = int(seconds)
    tv = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)


class BoundedConnection(connection.Connection):
    """A connection whose reads and writes time out until the first reply has arrived."""

    _armed = True

    def recv(self) -> Any:
        try:
            return super().recv()
        finally:
            if self._armed:
                self._armed = False
                with contextlib.suppress(OSError), socket_of(self.fileno()) as s:
                    _set_io_timeout(s, 0)


def _budget() -> float:
    deadline = getattr(_connecting, "deadline", None)
    if deadline is None:
        return link_timeout
    return max(0.05, deadline - time.monotonic())


def bounded_client(
    address: tuple[str, int], family: str | None = None, authkey: bytes | None = None
) -> connection.Connection:
    """``multiprocessing.connection.Client`` for TCP, with TCP_NODELAY set before the
    handshake (tcp.py says why) and the connect, handshake and first reply bounded."""
    seconds = _budget()
    sock = socket.create_connection(address, timeout=seconds)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)
        _set_io_timeout(sock, seconds)
        conn = BoundedConnection(sock.detach())
    except BaseException:
        sock.close()
        raise
    try:
        if authkey is not None:
            connection.answer_challenge(conn, authkey)
            connection.deliver_challenge(conn, authkey)
    except BaseException:
        conn.close()
        raise
    return conn


def forget(address: tuple[str, int]) -> None:
    """Drop the proxies' cached connections to ``address`` (see the module docstring)."""
    mutex, cache = proxy_connection_cache()
    with mutex:
        entry = cache.pop(address, None)
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
    global link_timeout
    install_client(bounded_client)
    link_timeout = timeout
    deadline = time.monotonic() + timeout
    _connecting.deadline = deadline
    try:
        return _connect(address, authkey, timeout, what, deadline)
    finally:
        _connecting.deadline = None


def _connect(
    address: tuple[str, int], authkey: bytes, timeout: float, what: str, deadline: float
) -> ClientManager:
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
