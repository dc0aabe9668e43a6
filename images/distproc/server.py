"""A hardened ``multiprocessing.managers`` server.

The stdlib server authenticates each connection in its own thread with no time bound, so a
client that connects and says nothing holds a thread forever, and it answers garbage with a
traceback and keeps the connection. This server:

- bounds the handshake and the first request in all (one watchdog thread), so a client that
  says nothing, or trickles bytes, is dropped;
- drops, with one log line, a client with the wrong authkey, random bytes, an HTTP request or a
  payload that cannot be unpickled, and keeps serving everyone else;
- records the TCP peer address of every connection, as the server sees it, in a thread-local
  that the shared objects read (``current_peer()``): results are attributed to the address
  they really arrived from, not to what a worker claims.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import pickle
import threading
import time
from collections.abc import Callable
from multiprocessing import connection
from multiprocessing.managers import BaseManager, Server
from traceback import format_exc
from typing import Any

from .tcp import set_nodelay, shut_down, socket_of

log = logging.getLogger("distproc.master")

_local = threading.local()
HANDSHAKE_TIMEOUT = 5.0
BACKLOG = 256


_connection_ids = itertools.count(1)


def current_connection() -> int:
    """The id of the connection the current request arrived on (0 outside a request)."""
    return getattr(_local, "conn", 0)


def current_peer() -> str:
    """The peer IP of the connection the current request arrived on ('' outside a request)."""
    return getattr(_local, "peer", "")


def _peer_of(conn: connection.Connection) -> tuple[str, int]:
    with socket_of(conn.fileno()) as s:
        try:
            host, port = s.getpeername()[:2]
        except OSError:
            return ("?", 0)
    return (host, port)


class _Dropped(Exception):
    """Raised to end a connection that sent something unreadable."""


class GuardedConnection:
    """A server-side connection that drops, with one log line, requests it cannot unpickle."""

    def __init__(self, conn: connection.Connection, peer: tuple[str, int]) -> None:
        self._conn = conn
        self.peer = peer

    def recv(self) -> Any:
        buf = self._conn.recv_bytes()
        try:
            return pickle.loads(buf)
        except Exception as exc:
            log.warning("dropped %s:%d: unreadable request (%s)", *self.peer, type(exc).__name__)
            self._conn.close()
            raise EOFError("unreadable request") from None

    def send(self, obj: Any) -> None:
        self._conn.send(obj)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class GuardedServer(Server):
    """``multiprocessing.managers.Server`` with a bounded handshake and peer tracking."""

    handshake_timeout = HANDSHAKE_TIMEOUT

    def __init__(self, registry: dict, address: tuple[str, int], authkey: bytes) -> None:
        super().__init__(registry, address, authkey, "pickle")
        self.watchdog = HandshakeWatchdog()
        self._disconnect_hooks: list[Callable[[int], None]] = []
        # the stdlib listens with a backlog of 16 (3.11): too few when 64 workers start at once
        self.listener._listener._socket.listen(BACKLOG)

    def add_disconnect_hook(self, fn: Callable[[int], None]) -> None:
        """Call ``fn(connection id)`` in the serving thread when a served connection ends."""
        self._disconnect_hooks.append(fn)

    def accepter(self) -> None:
        while not self.stop_event.is_set():
            try:
                conn = self.listener.accept()
            except OSError:
                if self.stop_event.is_set():
                    return
                continue
            threading.Thread(target=self.handle_request, args=(conn,), daemon=True).start()

    def handle_request(self, conn: connection.Connection) -> None:
        set_nodelay(conn.fileno())
        peer = _peer_of(conn)
        try:
            self._serve(conn, peer)
        except SystemExit:
            pass  # serve_client() exits its thread this way on EOF
        finally:
            conn.close()

    def _serve(self, conn: connection.Connection, peer: tuple[str, int]) -> None:
        token = self.watchdog.watch(conn, self.handshake_timeout)
        try:
            connection.deliver_challenge(conn, self.authkey)
            connection.answer_challenge(conn, self.authkey)
            guarded = GuardedConnection(conn, peer)
            request = guarded.recv()
            _ignore, funcname, args, kwds = request
            if funcname not in self.public:
                raise _Dropped(f"unknown request {funcname!r}")
            func = getattr(self, funcname)
        except connection.AuthenticationError:
            self.watchdog.done(token)
            log.warning("dropped %s:%d: authentication failed (wrong authkey?)", *peer)
            return
        except (EOFError, OSError, ValueError, TypeError, _Dropped) as exc:
            if self.watchdog.done(token):
                log.warning(
                    "dropped %s:%d: no complete handshake within %.0fs",
                    peer[0],
                    peer[1],
                    self.handshake_timeout,
                )
            elif not isinstance(exc, EOFError):  # EOF: a port probe, or already logged
                log.warning("dropped %s:%d: not a distproc client (%s)", peer[0], peer[1], exc)
            return
        if self.watchdog.done(token):
            return  # it finished just as its time ran out: the socket is shut already
        _local.peer = peer[0]
        _local.conn = next(_connection_ids)
        try:
            try:
                msg: tuple[str, Any] = ("#RETURN", func(guarded, *args, **kwds))
            except Exception:
                msg = ("#TRACEBACK", format_exc())
            with contextlib.suppress(OSError):
                conn.send(msg)
        finally:
            for hook in self._disconnect_hooks:
                try:
                    hook(_local.conn)
                except Exception:
                    log.exception("disconnect hook failed")
            _local.conn = 0


class HandshakeWatchdog:
    """One thread that shuts the sockets of handshakes running past their deadline.

    The bound is on the whole handshake and first request, not per read: a client that
    trickles a byte at a time is dropped as surely as one that says nothing.
    """

    def __init__(self, tick: float = 0.1) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[float, connection.Connection]] = {}
        self._expired: set[int] = set()
        self._tokens = itertools.count()
        self._tick = tick
        self._thread: threading.Thread | None = None

    def watch(self, conn: connection.Connection, seconds: float) -> int:
        with self._lock:
            token = next(self._tokens)
            self._pending[token] = (time.monotonic() + seconds, conn)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="handshakes", daemon=True)
                self._thread.start()
            return token

    def done(self, token: int) -> bool:
        """Stop watching; True if the deadline had passed (the socket was shut)."""
        with self._lock:
            self._pending.pop(token, None)
            if token in self._expired:
                self._expired.discard(token)
                return True
            return False

    def _run(self) -> None:
        while True:
            time.sleep(self._tick)
            now = time.monotonic()
            with self._lock:
                late = [t for t, (deadline, _) in self._pending.items() if deadline < now]
                for token in late:
                    _, conn = self._pending.pop(token)
                    self._expired.add(token)
                    shut_down(conn.fileno())


class MasterManager(BaseManager):
    """The master's manager: typeids are registered by the master module."""


def make_server(address: tuple[str, int], authkey: bytes) -> GuardedServer:
    """A guarded server for everything registered on ``MasterManager``."""
    return GuardedServer(MasterManager._registry, address, authkey)
