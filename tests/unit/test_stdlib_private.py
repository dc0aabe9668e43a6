"""What server.py and client.py take from multiprocessing's internals (stdlib_private.py)
still exists and behaves as they need: this fails first when a Python release changes it."""

from __future__ import annotations

import hmac
import os
import socket
import threading
from collections.abc import Callable
from multiprocessing import AuthenticationError, connection
from multiprocessing.managers import BaseManager, BaseProxy
from typing import Any

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


def _against_handshake(client: Callable[[connection.Connection], None], key: bytes) -> Any:
    """Run ``client`` on one end of a socket pair and ``Handshake(key)`` on the other; the
    Handshake once it has the first request, or the exception it raised."""
    a, b = socket.socketpair()
    client_side = connection.Connection(a.detach())
    hs = handshake.Handshake(key, 1 << 20)
    outcome: list[Any] = []

    def server() -> None:
        with b:
            try:
                while hs.request is None:
                    if hs.out:
                        del hs.out[: b.send(hs.out)]
                        continue
                    data = b.recv(4096)
                    if not data:
                        raise EOFError("the client hung up")
                    hs.feed(data)
                outcome.append(hs)
            except Exception as exc:
                if hs.out:  # #FAILURE#, as the stdlib server sends it
                    b.sendall(hs.out)
                outcome.append(exc)

    t = threading.Thread(target=server, daemon=True)
    t.start()
    try:
        client(client_side)
        client_side.send(("x", "dummy", (), {}))
    except (AuthenticationError, EOFError, OSError):
        pass
    t.join(5)
    client_side.close()
    assert outcome, "the handshake neither ended nor failed"
    return outcome[0]


def _client_312(key: bytes, digest: bytes = b"sha256", answer_with: bytes | None = None) -> Any:
    """What a 3.12+ ``Client`` does (CPython ``Lib/multiprocessing/connection.py``,
    ``answer_challenge`` then ``deliver_challenge(digest_name=...)``), written out so that it
    runs under this Python too: the host's 3.11 speaks only the legacy format."""

    def client(conn: connection.Connection) -> None:
        message = conn.recv_bytes(256)
        assert message.startswith(stdlib_private.CHALLENGE)
        message = message[len(stdlib_private.CHALLENGE) :]
        name = answer_with or message[1 : message.index(b"}")]  # our server sends {sha256}
        conn.send_bytes(b"{%s}%s" % (name, hmac.new(key, message, name.decode()).digest()))
        if conn.recv_bytes(256) != stdlib_private.WELCOME:
            raise AuthenticationError("digest sent was rejected")
        ours = b"{%s}%s" % (digest, os.urandom(40))
        conn.send_bytes(stdlib_private.CHALLENGE + ours)
        reply = conn.recv_bytes(256)
        # the answer comes in the digest we asked for, the MAC over all of our challenge
        assert reply == b"{%s}%s" % (digest, hmac.new(key, ours, digest.decode()).digest())
        conn.send_bytes(stdlib_private.WELCOME)

    return client


def _client_311(key: bytes) -> Any:
    """What a <=3.11 ``Client`` does: raw HMAC-MD5 answers, a 20-byte challenge."""

    def client(conn: connection.Connection) -> None:
        message = conn.recv_bytes(256)[len(stdlib_private.CHALLENGE) :]
        conn.send_bytes(hmac.new(key, message, "md5").digest())
        if conn.recv_bytes(256) != stdlib_private.WELCOME:
            raise AuthenticationError("digest sent was rejected")
        ours = os.urandom(20)
        conn.send_bytes(stdlib_private.CHALLENGE + ours)
        assert conn.recv_bytes(256) == hmac.new(key, ours, "md5").digest()
        conn.send_bytes(stdlib_private.WELCOME)

    return client


def test_this_pythons_own_client_passes_the_handshake() -> None:
    """``Client``'s own steps, whichever format this Python speaks (3.11 on the host; the
    e2e tests run this module under 3.13 and 3.14 too, in their images)."""
    key = b"secret"

    def client(conn: connection.Connection) -> None:
        connection.answer_challenge(conn, key)
        connection.deliver_challenge(conn, key)

    hs = _against_handshake(client, key)
    assert isinstance(hs, handshake.Handshake) and hs.request is not None


@pytest.mark.parametrize("digest", sorted(stdlib_private.ALLOWED_DIGESTS))
def test_a_312_client_passes_the_handshake(digest: bytes) -> None:
    """The 3.12+ format, with each digest a 3.12+ client may challenge with (it uses sha256;
    the stdlib server accepts them all, so must we)."""
    hs = _against_handshake(_client_312(b"secret", digest), b"secret")
    assert isinstance(hs, handshake.Handshake) and hs.request is not None


def test_a_311_client_passes_the_handshake() -> None:
    hs = _against_handshake(_client_311(b"secret"), b"secret")
    assert isinstance(hs, handshake.Handshake) and hs.request is not None


@pytest.mark.parametrize(
    "client",
    [_client_312(b"other"), _client_311(b"other"), _client_312(b"secret", answer_with=b"sha1")],
    ids=["3.12-wrong-key", "3.11-wrong-key", "3.12-digest-not-allowed"],
)
def test_a_wrong_answer_is_refused_in_either_format(client: Any) -> None:
    """A wrong key, or a digest the stdlib does not allow (sha1), gets #FAILURE#."""
    assert isinstance(_against_handshake(client, b"secret"), handshake.AuthFailed)


def test_answer_and_verify_in_both_formats() -> None:
    key = b"secret"
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
