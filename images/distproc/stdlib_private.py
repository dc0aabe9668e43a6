"""Every use of an undocumented part of ``multiprocessing``, in one place.

The hardened server and the client need a few things the stdlib does not expose: the
listening socket (to raise the backlog and to accept without blocking), the names a manager
server answers on a new connection, its proxy refcounts (to pin the shared objects), the
connection factory managers and proxies use, and the proxies' per-address connection cache.
Each is reached here only, so that when a Python release moves one, one module breaks, and
``tests/unit/test_stdlib_private.py`` says which.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from multiprocessing import connection, managers
from multiprocessing.managers import BaseProxy, Server
from typing import Any

# What multiprocessing.connection sends around the authentication handshake (3.11-3.14).
CHALLENGE = b"#CHALLENGE#"
WELCOME = b"#WELCOME#"
FAILURE = b"#FAILURE#"
# The 3.12+ digest names a client may choose: ``_ALLOWED_DIGESTS`` there.
ALLOWED_DIGESTS = frozenset({b"md5", b"sha256", b"sha384", b"sha3_256", b"sha3_384"})


def listening_socket(listener: connection.Listener) -> socket.socket:
    """The socket under a ``multiprocessing.connection.Listener`` (``_listener._socket``)."""
    return listener._listener._socket


def public_requests(server: Server) -> frozenset[str]:
    """What a manager server answers as a new connection's first request (``Server.public``)."""
    return frozenset(server.public)


def refcounts(server: Server) -> tuple[Any, dict[str, int]]:
    """The lock and the proxy refcount by object ident of a manager server (``Server.mutex``,
    ``Server.id_to_refcount``). ``Server.create`` adds an ident at 1, each proxy's
    construction increfs and its finalizer decrefs; at 0 the stdlib forgets the object."""
    return server.mutex, server.id_to_refcount


Client = Callable[..., connection.Connection]


def install_client(client: Client) -> None:
    """Make every manager and proxy created from now on open its connections with ``client``.

    ``BaseManager.__init__`` and ``BaseProxy.__init__`` read the factory from
    ``managers.listener_client`` (a module-level dict) at construction time.
    """
    listener, _ = managers.listener_client["pickle"]
    managers.listener_client["pickle"] = (listener, client)


def proxy_connection_cache() -> tuple[Any, dict]:
    """The lock and the per-address thread-local cache every ``BaseProxy`` shares."""
    return BaseProxy._mutex, BaseProxy._address_to_local


# ``Server.serve_client`` ends its thread with ``sys.exit()`` on EOF or a failed send, and
# ``Server.accept_connection`` runs it in the calling thread: a serving thread must catch
# SystemExit. ``serve_client`` reads requests with ``conn.recv()`` and answers with
# ``conn.send()``, so a wrapper with those two methods can bound what it reads.
SERVE_EXITS_WITH = SystemExit


# -- process pools (the worker) -------------------------------------------------------------


def forkserver_pid() -> int | None:
    """The running forkserver's pid (``forkserver._forkserver._forkserver_pid``): the parent
    of every process a forkserver context starts. None if a release renames it."""
    from multiprocessing import forkserver

    return getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)


def pool_processes(pool: Any) -> list[Any]:
    """A ``ProcessPoolExecutor``'s live processes (``_processes``), to kill a hung one."""
    return list((getattr(pool, "_processes", None) or {}).values())


def pool_is_broken(pool: Any) -> bool:
    """Whether a ``ProcessPoolExecutor`` lost a process (``_broken``) and refuses work."""
    return bool(getattr(pool, "_broken", False))
