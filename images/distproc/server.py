"""A hardened ``multiprocessing.managers`` server.

The stdlib server starts a thread per accepted connection and authenticates in it with no
time bound: a client that connects and says nothing holds a thread forever, and enough of
them (a few hundred idle sockets, past the container's ``pids`` limit) make
``Thread.start()`` fail in the accepter, which then dies and the master accepts nobody
again. This server:

- accepts and runs every handshake (both challenges and the first request) in ONE selector
  thread, non-blocking, each bounded as a whole by ``handshake_timeout``, so a client that
  says nothing, or trickles bytes, holds no thread and is dropped in time;
- caps the connections in the handshake (overall and per peer IP) and the connections it
  serves (one thread each); past the per-peer or the served cap a new connection is closed
  at once, but a full handshake table evicts a pending handshake of the peer holding the
  most slots (oldest first) for the newcomer, so that a few flooding IPs cannot lock out a
  key holder by squatting every slot with idle sockets;
- bounds the first request in the handshake to 64 KiB (``handshake.FIRST_REQUEST_MAX``),
  hands only authenticated connections, with their first request, to serving threads, and
  bounds the size of every later request (``max_request``): an over-size one closes that
  connection, not the master;
- sets keepalive and a send timeout on every served connection (``tcp.set_served_options``),
  so that a vanished peer or a client that never reads its reply frees its thread in time;
- does not answer ``shutdown`` (it would stop the accepter for good) and never lets
  ``decref`` drop a shared object (the broker, the classic queues) below a refcount of 1,
  so that no request can pull them from under the live proxies of other clients;
- drops, with one log line per peer per interval, a client with the wrong authkey, random
  bytes, an HTTP request or a payload that cannot be unpickled, and keeps serving everyone;
- records the TCP peer address and a connection id of every connection in a thread-local
  that the shared objects read (``current_peer()``, ``current_connection()``), and calls
  ``add_disconnect_hook`` hooks when a served connection ends.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import pickle
import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import connection
from multiprocessing.managers import BaseManager, Server
from traceback import format_exc
from typing import Any

from .handshake import AuthFailed, Handshake, NotAClient, TooBig
from .ratelimit import PeerLogLimiter
from .stdlib_private import SERVE_EXITS_WITH, listening_socket, public_requests, refcounts
from .tcp import set_nodelay, set_served_options

log = logging.getLogger("distproc.master")

_local = threading.local()
BACKLOG = 256
MIB = 1024 * 1024
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only
_ACCEPTS_PER_ROUND = 64  # so that a burst of connects cannot starve handshakes in progress
# Server.public names we do not answer: ``shutdown`` sets stop_event, which ends the accepter
# (the master then lives on, accepting nobody); our master stops only on its own signal.
_NOT_ANSWERED = frozenset({"shutdown"})


@dataclass(frozen=True)
class ServerLimits:
    """How much the server takes on at once.

    The defaults fit the default master container (``pids: 256``): each served connection
    is a thread, the master has about five of its own, and ``orchestrate job`` runs a
    submit process in the same container, so 200 served connections leave ~50 spare.
    Handshakes take no thread, only a socket and at most 64 KiB each (a first request's cap)
    until authenticated.

    ``keepalive`` (idle, interval, count seconds) notices a vanished peer of a served
    connection in about a minute; ``send_timeout`` closes a served connection whose reply
    makes no progress for that long (``tcp.set_served_options`` says how; 0: off). There is
    deliberately no idle timeout on served connections: workers idle between jobs.
    """

    max_connections: int = 200  # see default_max_connections()
    max_handshakes: int = 64
    max_handshakes_per_peer: int = 16
    handshake_timeout: float = 5.0
    max_request: int = 64 * MIB
    refusal_log_interval: float = 10.0
    keepalive: tuple[int, int, int] = (30, 10, 3)
    send_timeout: float = 60.0


SPARE_PIDS = 56  # the master's own threads, a submit process beside it, and headroom
MAX_CONNECTIONS_UNLIMITED = 1024  # with no pids limit: still a bound (one thread each)


def default_max_connections(pids: int | None) -> int:
    """Served connections that fit under a pids limit (pids 256 -> 200). Each worker holds
    two (its main loop and its heartbeat), so the default master serves 100 workers: raise
    the master's ``pids`` in cluster.yaml for more."""
    if pids is None:
        return MAX_CONNECTIONS_UNLIMITED
    return max(8, min(MAX_CONNECTIONS_UNLIMITED, pids - SPARE_PIDS))


def current_peer() -> str:
    """The peer IP of the connection the current request arrived on ('' outside a request)."""
    return getattr(_local, "peer", "")


def current_connection() -> int:
    """A unique id (>0) of the connection the current request arrived on (0 outside one)."""
    return getattr(_local, "conn", 0)


class GuardedConnection:
    """A served connection that bounds and unpickles requests, dropping with one log line
    a request that is over-size or cannot be unpickled (``serve_client`` reads through it).

    Not rate-limited: only a client holding the authkey gets here, and the worker gives up
    on a result the master keeps refusing after a few tries."""

    def __init__(
        self,
        conn: connection.Connection,
        peer: tuple[str, int],
        max_request: int,
        send_timeout: float = 0.0,
    ) -> None:
        self._conn = conn
        self.peer = peer
        self._max = max_request
        self._send_timeout = send_timeout

    def recv(self) -> Any:
        try:
            buf = self._conn.recv_bytes(self._max)
        except OSError:
            # recv_bytes(maxlength) raises OSError on a message over maxlength, before reading
            # its body, and marks the connection unreadable; any other OSError does not
            if self._conn.closed or not self._conn.readable:
                log.warning(
                    "dropped %s:%d: a request over %d MiB (--max-request-mib)",
                    *self.peer,
                    self._max // MIB,
                )
            self._conn.close()
            raise EOFError("connection lost or request over-size") from None
        try:
            return pickle.loads(buf)
        except Exception as exc:
            log.warning("dropped %s:%d: unreadable request (%s)", *self.peer, type(exc).__name__)
            self._conn.close()
            raise EOFError("unreadable request") from None

    def send(self, obj: Any) -> None:
        """Send a reply; one that fails (EAGAIN after SO_SNDTIMEO: a client that does not read)
        closes the connection at once, since part of it may be written: ``serve_client``
        then fails its fallback send at once too and ends the thread, freeing the reply."""
        try:
            self._conn.send(obj)
        except OSError as exc:
            if not self._conn.closed:
                if isinstance(exc, BlockingIOError):
                    log.warning(
                        "dropped %s:%d: a reply made no progress for %gs (--send-timeout)",
                        *self.peer,
                        self._send_timeout,
                    )
                self._conn.close()
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@dataclass
class _Pending:
    """A connection still in its handshake."""

    sock: socket.socket
    fd: int  # the key of ``_pending``: ``sock.fileno()`` is -1 once the socket is closed
    peer: tuple[str, int]
    deadline: float
    handshake: Handshake


class GuardedServer(Server):
    """``multiprocessing.managers.Server`` with a selector-run handshake, caps, peer and
    connection tracking (see the module docstring)."""

    def __init__(
        self,
        registry: dict,
        address: tuple[str, int],
        authkey: bytes,
        limits: ServerLimits | None = None,
    ) -> None:
        super().__init__(registry, address, authkey, "pickle")
        self.limits = limits or ServerLimits()
        self.handshake_timeout = self.limits.handshake_timeout
        self._public = public_requests(self) - _NOT_ANSWERED
        # the stdlib listens with a backlog of 16 (3.11): too few when 64 workers start at once
        self._lsock = listening_socket(self.listener)
        self._lsock.listen(BACKLOG)
        self._pending: dict[int, _Pending] = {}  # by fd
        self._per_peer: Counter[str] = Counter()
        self._served = 0
        self._served_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._hooks: list[Callable[[int], None]] = []
        # serve_forever() makes its own (3.11); one from the start lets accepter() run alone
        self.stop_event = threading.Event()
        self.refusals = PeerLogLimiter(log, self.limits.refusal_log_interval)

    # -- interface ---------------------------------------------------------------------------
    def add_disconnect_hook(self, fn: Callable[[int], None]) -> None:
        """Call ``fn(connection_id)`` in the serving thread after that connection's serve
        loop ends, for any reason. Exceptions from ``fn`` are logged and swallowed."""
        self._hooks.append(fn)

    def counts(self) -> dict[str, int]:
        """Connections served and in the handshake now (for tests and status)."""
        return {"served": self._served, "handshakes": len(self._pending)}

    # -- the selector loop -------------------------------------------------------------------
    def accepter(self) -> None:
        """Replaces the stdlib's accepter: accepts and runs every handshake in this thread."""
        self._lsock.setblocking(False)
        with selectors.DefaultSelector() as sel:
            sel.register(self._lsock, selectors.EVENT_READ, None)
            while not self.stop_event.is_set():
                try:
                    self._round(sel)
                except Exception as exc:  # the loop must outlive anything one round raises
                    self.refusals.warning("loop", "handshake loop: %s", _describe(exc))
                    time.sleep(0.05)

    def _round(self, sel: selectors.BaseSelector) -> None:
        now = time.monotonic()
        wait = 0.5
        if self._pending:
            wait = max(0.0, min(wait, min(p.deadline for p in self._pending.values()) - now))
        for key, mask in sel.select(wait):
            if key.data is None:
                self._accept_some(sel)
            elif self._pending.get(key.fd) is key.data:
                self._step(sel, key.data, mask)
            # else: dropped earlier in this round (evicted for a newcomer), its fd maybe reused
        now = time.monotonic()
        for p in [p for p in self._pending.values() if p.deadline <= now]:
            self._drop(
                sel,
                p,
                "dropped %s:%d: no complete handshake within %.0fs",
                *p.peer,
                self.handshake_timeout,
            )

    def _accept_some(self, sel: selectors.BaseSelector) -> None:
        for _ in range(_ACCEPTS_PER_ROUND):
            try:
                sock, addr = self._lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if self.stop_event.is_set():
                    return
                self.refusals.warning("accept", "accept failed: %s", _describe(exc))
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    time.sleep(0.05)  # out of descriptors: don't spin on a readable listener
                return
            peer = (str(addr[0]), int(addr[1]))
            try:
                self._admit(sel, sock, peer)
            except Exception as exc:
                self.refusals.warning(peer[0], "dropped %s:%d: %s", *peer, _describe(exc))
                _close(sock)

    def _admit(
        self, sel: selectors.BaseSelector, sock: socket.socket, peer: tuple[str, int]
    ) -> None:
        lim = self.limits
        refused = None
        if self._per_peer[peer[0]] >= lim.max_handshakes_per_peer:
            refused = f"{lim.max_handshakes_per_peer} handshakes from it in progress"
        elif self._served >= lim.max_connections:
            refused = f"{self._served} connections served (--max-connections)"
        if refused:
            self.refusals.warning(peer[0], "refused %s:%d: %s", *peer, refused)
            _close(sock)
            return
        if self._pending and (
            len(self._pending) >= lim.max_handshakes
            or self._served + len(self._pending) >= lim.max_connections
        ):
            self._evict(sel)
        sock.setblocking(False)
        set_nodelay(sock.fileno())
        deadline = time.monotonic() + self.handshake_timeout
        p = _Pending(sock, sock.fileno(), peer, deadline, Handshake(self.authkey))
        self._pending[p.fd] = p
        self._per_peer[peer[0]] += 1
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, p)

    def _evict(self, sel: selectors.BaseSelector) -> None:
        """Make room for a newcomer: drop the oldest pending handshake of the peer holding the
        most slots. Refusing the newcomer instead let 4 IPs x 16 idle sockets, reopened as
        soon as dropped, fill the 64 slots: key holders then failed to connect most of the
        time. This way a flooder only evicts itself while a peer with one pending connection
        keeps it. A linear scan: the table is small (64 by default) and only full under a
        flood; ``_pending`` iterates in admission order, so the first match is the oldest."""
        most = max(self._per_peer.values())
        victim = next(p for p in self._pending.values() if self._per_peer[p.peer[0]] == most)
        self._drop(
            sel, victim, "dropped %s:%d: evicted from a full handshake table, its peer holding "
            "%d of %d slots (--max-handshakes)", *victim.peer, most, len(self._pending),
        )  # fmt: skip

    def _step(self, sel: selectors.BaseSelector, p: _Pending, mask: int) -> None:
        hs = p.handshake
        try:
            if mask & selectors.EVENT_WRITE and hs.out:
                del hs.out[: p.sock.send(hs.out)]
            if mask & selectors.EVENT_READ:
                data = p.sock.recv(65536)
                if _QUICKACK is not None:
                    # ACK at once: a client without TCP_NODELAY (the stdlib's) holds its
                    # first request, written right after #WELCOME#, until it sees our ACK
                    p.sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
                if not data:
                    self._drop(sel, p, None)  # EOF: a port probe, or a client giving up
                    return
                hs.feed(data)
        except (BlockingIOError, InterruptedError):
            return
        except (ConnectionResetError, BrokenPipeError):
            self._drop(sel, p, None)  # as EOF: a port probe that closed before our challenge
            return
        except AuthFailed as exc:
            with contextlib.suppress(OSError):
                p.sock.send(hs.out)  # #FAILURE#, so that the client says "wrong authkey"
            self._drop(sel, p, "dropped %s:%d: %s", *p.peer, exc)
            return
        except TooBig as exc:
            self._drop(sel, p, "dropped %s:%d: %s (the handshake's cap)", *p.peer, exc)
            return
        except NotAClient as exc:
            self._drop(sel, p, "dropped %s:%d: not a distproc client (%s)", *p.peer, exc)
            return
        except Exception as exc:  # anything else: that connection ends, the loop goes on
            self._drop(sel, p, "dropped %s:%d: %s", *p.peer, _describe(exc))
            return
        if hs.request is not None:
            self._hand_off(sel, p)
        else:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if hs.out else 0)
            sel.modify(p.sock, events, p)

    def _forget(self, sel: selectors.BaseSelector, p: _Pending) -> None:
        """Take ``p`` out of the table, once: a second call is a no-op. Stepping an evicted
        handshake (its event came in the same select round) used to count its peer down a
        second time; the counts drifted below the truth until a key holder with one pending
        handshake held "the most slots" and was evicted by the flood (a CI failure of
        test_handshake_squatting_cannot_lock_out_key_holders)."""
        if self._pending.get(p.fd) is not p:
            return
        del self._pending[p.fd]
        self._per_peer[p.peer[0]] -= 1
        if self._per_peer[p.peer[0]] <= 0:
            del self._per_peer[p.peer[0]]
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(p.sock)

    def _drop(self, sel: selectors.BaseSelector, p: _Pending, msg: str | None, *args: Any) -> None:
        self._forget(sel, p)
        _close(p.sock)
        if msg is not None:
            self.refusals.warning(p.peer[0], msg, *args)

    def _hand_off(self, sel: selectors.BaseSelector, p: _Pending) -> None:
        """An authenticated connection and its first request to a serving thread of its own."""
        request = p.handshake.request
        assert request is not None
        if p.handshake.out:  # the client sent its request before reading our answer
            self._drop(sel, p, "dropped %s:%d: not a distproc client (out of turn)", *p.peer)
            return
        with self._served_lock:
            if self._served >= self.limits.max_connections:
                full = True
            else:
                full = False
                self._served += 1
        if full:
            self._drop(
                sel, p, "refused %s:%d: %d connections served (--max-connections)",
                *p.peer, self.limits.max_connections,
            )  # fmt: skip
            return
        self._forget(sel, p)
        conn = None
        try:
            p.sock.setblocking(True)
            set_served_options(p.sock, self.limits.keepalive, self.limits.send_timeout)
            conn = connection.Connection(p.sock.detach())
            cid = next(self._ids)
            threading.Thread(
                target=self._serve_connection,
                args=(conn, p.peer, cid, request),
                name=f"conn-{cid}",
                daemon=True,
            ).start()
        except Exception as exc:  # RuntimeError: can't start new thread (the pids limit)
            with self._served_lock:
                self._served -= 1
            if conn is not None:
                conn.close()
            else:
                _close(p.sock)
            self.refusals.warning(
                p.peer[0], "dropped %s:%d: cannot serve it (%s)", *p.peer, _describe(exc)
            )

    # -- serving threads ---------------------------------------------------------------------
    def _serve_connection(
        self, conn: connection.Connection, peer: tuple[str, int], cid: int, request: bytes
    ) -> None:
        _local.peer = peer[0]
        _local.conn = cid
        try:
            self._serve_first(conn, peer, request)
        except SERVE_EXITS_WITH:
            pass  # serve_client() ends its loop this way on EOF
        except Exception as exc:
            self.refusals.warning(peer[0], "connection %s:%d ended: %s", *peer, _describe(exc))
        finally:
            conn.close()
            _local.peer = ""
            _local.conn = 0
            with self._served_lock:
                self._served -= 1
            for hook in list(self._hooks):
                try:
                    hook(cid)
                except Exception:
                    log.exception("disconnect hook %r failed for connection %d", hook, cid)

    def _serve_first(self, conn: connection.Connection, peer: tuple[str, int], raw: bytes) -> None:
        try:
            _ignore, funcname, args, kwds = pickle.loads(raw)
        except Exception as exc:
            self.refusals.warning(
                peer[0], "dropped %s:%d: unreadable request (%s)", *peer, type(exc).__name__
            )
            return
        if funcname not in self._public:
            self.refusals.warning(
                peer[0], "dropped %s:%d: not a distproc client (%r)", *peer, funcname
            )
            return
        guarded = GuardedConnection(conn, peer, self.limits.max_request, self.limits.send_timeout)
        try:
            msg: tuple[str, Any] = ("#RETURN", getattr(self, funcname)(guarded, *args, **kwds))
        except Exception:
            msg = ("#TRACEBACK", format_exc())
        with contextlib.suppress(OSError):
            conn.send(msg)

    def decref(self, c: Any, ident: str) -> None:
        """The stdlib's ``decref``, except that it never takes an object below a refcount of
        1. Our registered callables return long-lived singletons (the broker and the two
        classic queues) shared by every client; at 0 the stdlib forgets one, and every live
        proxy of it then fails with ``RemoteError: KeyError``: one ``decref <broker ident>``
        request (its refcount is 1 with one client) crashed a running submit and made the
        workers reconnect. So they stay for the server's life; an unknown ident still
        raises KeyError, as in the stdlib."""
        mutex, counts = refcounts(self)
        with mutex:
            count = counts[ident]
            if count > 1:
                counts[ident] = count - 1


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


class MasterManager(BaseManager):
    """The master's manager: typeids are registered by the master module."""


def make_server(
    address: tuple[str, int], authkey: bytes, limits: ServerLimits | None = None
) -> GuardedServer:
    """A guarded server for everything registered on ``MasterManager``."""
    return GuardedServer(MasterManager._registry, address, authkey, limits)
