"""What server.py and client.py take from multiprocessing's internals (stdlib_private.py)
still exists and behaves as they need: this fails first when a Python release changes it."""

from __future__ import annotations

import socket
import threading
from multiprocessing import connection
from multiprocessing.managers import BaseManager, BaseProxy

import pytest
from distproc import handshake, stdlib_private


def test_listener_socket_and_public_requests() -> None:
    listener = connection.Listener(("127.0.0.1", 0))
    try:
        s = stdlib_private.listening_socket(listener)
        assert isinstance(s, socket.socket) and s.getsockname() == listener.address
    finally:
        listener.close()
    from multiprocessing.managers import Server

    server = Server({}, ("127.0.0.1", 0), b"k", "pickle")
    try:
        public = stdlib_private.public_requests(server)
        assert {"accept_connection", "create", "incref", "decref", "dummy"} <= public
    finally:
        server.listener.close()


def test_refcounts_are_the_servers_proxy_counts() -> None:
    """``refcounts`` is the lock and dict ``create``/``incref``/``decref`` keep, and the
    stdlib forgets an object at 0 (what GuardedServer.decref prevents), and has shutdown."""
    from multiprocessing.managers import Server

    obj = object()
    server = Server({"get": (lambda: obj, (), None, None)}, ("127.0.0.1", 0), b"k", "pickle")
    try:
        mutex, counts = stdlib_private.refcounts(server)
        ident, _ = server.create(None, "get")
        assert counts[ident] == 1 and hasattr(mutex, "acquire")
        server.incref(None, ident)
        assert counts[ident] == 2
        server.decref(None, ident)
        server.decref(None, ident)
        assert ident not in counts and ident not in server.id_to_obj
        assert "shutdown" in stdlib_private.public_requests(server)
    finally:
        server.listener.close()


def test_managers_and_proxies_take_the_installed_client() -> None:
    from multiprocessing import managers

    before = managers.listener_client["pickle"]
    marker = object()
    try:
        stdlib_private.install_client(marker)  # type: ignore[arg-type]
        assert BaseManager(address=("127.0.0.1", 1), authkey=b"k")._Client is marker
    finally:
        managers.listener_client["pickle"] = before
    mutex, cache = stdlib_private.proxy_connection_cache()
    assert cache is BaseProxy._address_to_local and hasattr(mutex, "acquire")


def test_recv_bytes_over_maxlength_closes_and_raises() -> None:
    """GuardedConnection tells an over-size request from a lost link by ``readable``."""
    a, b = socket.socketpair()
    ca, cb = connection.Connection(a.detach()), connection.Connection(b.detach())
    try:
        ca.send_bytes(b"x" * 1000)
        with pytest.raises(OSError):
            cb.recv_bytes(100)
        assert cb.closed or not cb.readable
    finally:
        ca.close()
        cb.close()


@pytest.mark.parametrize("legacy_challenge", [False, True])
def test_the_state_machine_speaks_the_stdlib_handshake(legacy_challenge: bool) -> None:
    """This Python's own Client authenticates against ``Handshake``; so do both formats of
    answer to our challenge (raw MD5 from <=3.11, ``{sha256}`` from 3.12+)."""
    key = b"secret"
    a, b = socket.socketpair()
    client_side = connection.Connection(a.detach())
    hs = handshake.Handshake(key, 1 << 20)
    done = threading.Event()

    def server() -> None:
        with b:
            while hs.request is None:
                if hs.out:
                    del hs.out[: b.send(hs.out)]
                    continue
                hs.feed(b.recv(4096))
            done.set()

    t = threading.Thread(target=server, daemon=True)
    t.start()
    connection.answer_challenge(client_side, key)
    connection.deliver_challenge(client_side, key)
    client_side.send(("x", "dummy", (), {}))
    t.join(5)
    client_side.close()
    assert done.is_set() and hs.request is not None
    import hmac

    challenge = b"{sha256}" + bytes(40)
    legacy = hmac.new(key, challenge, "md5").digest()
    modern = b"{sha256}" + hmac.new(key, challenge, "sha256").digest()
    assert handshake.verify(key, challenge, legacy) and handshake.verify(key, challenge, modern)
    assert not handshake.verify(b"other", challenge, modern)
    # our answers: raw MD5 to a 3.11 client's 20 bytes, {digest}... to a 3.12+ client's
    assert len(handshake.answer(key, bytes(20))) == 16
    assert handshake.answer(key, b"{sha384}" + bytes(40)).startswith(b"{sha384}")


def test_process_pool_internals_the_worker_reads() -> None:
    """pools.py kills a hung task's process, drops a broken pool and knows the forkserver's
    pid through these: each must still mean what it meant."""
    import multiprocessing
    import os
    import signal
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        assert pool.submit(os.getppid).result(timeout=30) == stdlib_private.forkserver_pid()
        [proc] = stdlib_private.pool_processes(pool)
        assert proc.is_alive() and not stdlib_private.pool_is_broken(pool)
        os.kill(proc.pid, signal.SIGKILL)
        with pytest.raises(BrokenProcessPool):
            pool.submit(os.getpid).result(timeout=30)
        assert stdlib_private.pool_is_broken(pool)
