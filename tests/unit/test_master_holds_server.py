"""The master holds: floods past its thread limit, handshakes that raise, stalled connects,
over-size requests and refusal logs (the findings of the server issue), on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing import connection
from pathlib import Path

import pytest
from harness import Procs

PIDS_ROOT = Path("/sys/fs/cgroup/pids")


@pytest.fixture
def pids_limit(request: pytest.FixtureRequest) -> Iterator[Callable[[int, int], None]]:
    """Put a process in a pids cgroup of its own (root ignores RLIMIT_NPROC, not this)."""
    if not (PIDS_ROOT / "cgroup.procs").exists() or not os.access(PIDS_ROOT, os.W_OK):
        pytest.skip("no writable cgroup v1 pids controller at /sys/fs/cgroup/pids")
    group = PIDS_ROOT / f"distproc-{re.sub(r'[^A-Za-z0-9_-]', '_', request.node.name)}"
    group.mkdir(exist_ok=True)
    moved: list[int] = []

    def limit(pid: int, max_pids: int) -> None:
        (group / "pids.max").write_text(str(max_pids))
        (group / "cgroup.procs").write_text(str(pid))
        moved.append(pid)

    try:
        yield limit
    finally:
        for pid in moved:  # back to the root group if still alive, so that rmdir works
            with contextlib.suppress(OSError):
                (PIDS_ROOT / "cgroup.procs").write_text(str(pid))
        deadline = time.monotonic() + 10
        while True:
            try:
                group.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def _open(port: int, n: int, deadline: float) -> list[socket.socket]:
    """Up to ``n`` idle connections (bounded by count and time)."""
    out = []
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        try:
            out.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            time.sleep(0.01)
    return out


def _close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


def _closed_by_server(s: socket.socket, within: float) -> bool:
    """Whether the server closes ``s`` within ``within`` seconds (reading what it sent)."""
    s.settimeout(0.2)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if s.recv(4096) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def _authenticated(port: int, key: str) -> connection.Connection:
    return connection.Client(("127.0.0.1", port), authkey=key.encode())


def test_flood_past_the_thread_limit(procs: Procs, pids_limit: Callable[[int, int], None]) -> None:
    """Finding 1: more idle connections than the master may have threads, held and reopened;
    then authenticated ones past the limit (Thread.start() fails): the worker keeps working
    and a new job completes."""
    master = procs.master(
        "--handshake-timeout", "2", "--max-connections", "1000", "--refusal-log-interval", "0",
        wait=False,
    )  # fmt: skip
    pids_limit(master.pid, 40)
    from harness import wait_listening

    wait_listening(procs.port)
    procs.worker("--name", "w1", "--mode", "inline")
    procs.wait_workers(1)
    sub = procs.submit_bg("--kind", "io", "--size", "2", "--tasks", "3000", "--batch", "8")
    # authenticated idle connections, each a serving thread, past pids.max 40
    held = []
    for _ in range(60):
        try:
            c = _authenticated(procs.port, procs.key)
            c.send((None, "accept_connection", ("flood",), {}))  # a thread held each
            held.append(c)
        except (OSError, EOFError, connection.AuthenticationError):
            pass
    time.sleep(0.5)
    for c in held:
        c.close()
    # then unauthenticated idle ones, held past the handshake bound and reopened
    flood = _open(procs.port, 300, time.monotonic() + 20)
    assert len(flood) >= 200, len(flood)
    time.sleep(2.5)
    _close_all(flood)
    flood = _open(procs.port, 300, time.monotonic() + 20)
    out, _ = sub.communicate(timeout=90)
    assert sub.returncode == 0 and json.loads(out)["totals"]["ok"] == 3000
    code, rep = procs.submit("--tasks", "500", timeout=60)  # a new job, the flood still held
    assert code == 0 and rep["totals"]["ok"] == 500
    _close_all(flood)
    procs.stop_all()
    log = procs.log_of(master)
    assert "can't start new thread" in log or "cannot serve it" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def test_exception_in_the_handshake_does_not_kill_the_watchdog(procs: Procs) -> None:
    """Finding 2: a bad client challenge (AssertionError in the stdlib), a huge first-request
    length (MemoryError) and garbage; silent clients are still dropped within the bound."""
    master = procs.master("--handshake-timeout", "1", "--refusal-log-interval", "0")
    key = procs.key.encode()
    # a bad challenge from the "client", after answering ours correctly
    s = socket.create_connection(("127.0.0.1", procs.port))
    c = connection.Connection(s.detach())
    connection.answer_challenge(c, key)
    c.send_bytes(b"this is no challenge")
    # a huge length as the first request, after a complete handshake
    huge = _authenticated(procs.port, procs.key)
    os.write(huge.fileno(), struct.pack("!iQ", -1, 1 << 40))
    # garbage
    with socket.create_connection(("127.0.0.1", procs.port)) as g:
        g.sendall(os.urandom(64))
    time.sleep(2.5)  # past the 1 s bound of those three (the old watchdog died by now)
    c.close()
    huge.close()
    t0 = time.monotonic()
    silent = [socket.create_connection(("127.0.0.1", procs.port)) for _ in range(3)]
    assert all(_closed_by_server(x, 4) for x in silent), "a silent client was not dropped"
    dropped_after = time.monotonic() - t0
    assert dropped_after < 2.5, dropped_after
    _close_all(silent)
    procs.worker("--name", "w1")
    code, rep = procs.submit("--tasks", "200")
    assert code == 0 and rep["totals"]["ok"] == 200
    procs.stop_all()
    log = procs.log_of(master)
    assert log.count("no complete handshake within 1s") >= 3, log
    assert "Traceback" not in log, log


def test_stalled_connect_raises_unreachable_within_the_timeout() -> None:
    """Finding 3: a listener that accepts and never answers; connect() gives up in time."""
    from distproc.client import Unreachable, connect

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set() and len(accepted) < 50:
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:  # closed at the end of the test
                return

    threading.Thread(target=accept, daemon=True).start()
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            connect(("127.0.0.1", port), b"key", timeout=2)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    t0 = time.monotonic()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(8)
    took = time.monotonic() - t0
    stop.set()
    listener.close()
    _close_all(accepted)
    assert outcome, "connect() was still blocked after 8 s against a silent listener"
    assert isinstance(outcome[0], Unreachable), outcome
    assert took < 3.0, took


def test_the_connect_bound_does_not_cut_long_calls(procs: Procs) -> None:
    """After connect(timeout=1), a classic get(timeout=2.5) waits it out (queue.Empty)."""
    import queue

    from distproc.client import connect

    procs.master()
    manager = connect(("127.0.0.1", procs.port), procs.key.encode(), timeout=1)
    q = manager.get_task_queue()
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=2.5)
    assert time.monotonic() - t0 >= 2.4


def _vm_hwm_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1))


def test_over_size_request_is_dropped_and_the_master_serves_on(procs: Procs) -> None:
    master = procs.master("--max-request-mib", "1", "--refusal-log-interval", "0")
    # a first request over the cap, after a complete handshake
    c = _authenticated(procs.port, procs.key)
    with pytest.raises((EOFError, OSError)):
        c.send_bytes(b"x" * (2 << 20))  # may fail already: the master closes mid-send
        assert c.poll(5)
        c.recv_bytes()
    c.close()
    # a later request over the cap, on a served connection
    from distproc.client import broker, connect

    b = broker(connect(("127.0.0.1", procs.port), procs.key.encode(), timeout=5))
    with pytest.raises((EOFError, OSError)):
        b.ping(b"x" * (2 << 20))
    procs.worker("--name", "w1")
    code, rep = procs.submit("--tasks", "300")
    assert code == 0 and rep["totals"]["ok"] == 300
    procs.stop_all()
    log = procs.log_of(master)
    assert log.count("over 1 MiB") >= 2, log


def test_a_200_mb_result_ends_not_ok_and_the_master_stays_small(procs: Procs) -> None:
    master = procs.master()
    procs.worker("--name", "w1", "--mode", "inline")
    procs.wait_workers(1)
    before = _vm_hwm_kib(master.pid)
    payloads = procs.tmp / "payloads.json"
    payloads.write_text(json.dumps([1, 200, 1, 1, 1, 1]))
    code, rep = procs.submit("--kind", "distproc_kinds.chaos:huge", "--payloads", str(payloads),
                             "--batch", "1", "--max-attempts", "2", timeout=120)  # fmt: skip
    grew_mib = (_vm_hwm_kib(master.pid) - before) / 1024
    assert code == 3, rep["checks"]
    assert rep["totals"]["ok"] == 5 and rep["totals"]["tasks"] == 6
    assert rep["totals"]["dead"] + rep["totals"]["failed"] == 1, rep["totals"]
    assert grew_mib < 100, f"the master's peak RSS grew {grew_mib:.0f} MiB"
    print(f"master VmHWM grew {grew_mib:.1f} MiB during the 200 MB result")


def test_refusal_logs_are_rate_limited_per_peer(procs: Procs) -> None:
    master = procs.master("--refusal-log-interval", "30")
    for _ in range(100):
        with socket.create_connection(("127.0.0.1", procs.port)) as s:
            s.sendall(b"GET / HTTP/1.1\r\n\r\n")
            _closed_by_server(s, 2)
    time.sleep(0.5)
    procs.stop_all()
    lines = [ln for ln in procs.log_of(master).splitlines() if "not a distproc client" in ln]
    assert 1 <= len(lines) <= 2, lines


def test_the_rate_limiter_counts_what_it_held_back() -> None:
    import logging

    from distproc.ratelimit import PeerLogLimiter

    now = [0.0]
    records: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("test.ratelimit")
    logger.addHandler(_Collect())
    logger.propagate = False
    limiter = PeerLogLimiter(logger, interval=10, clock=lambda: now[0])
    for _ in range(50):
        limiter.warning("10.0.0.1", "refused %s", "10.0.0.1")
    limiter.warning("10.0.0.2", "refused %s", "10.0.0.2")
    now[0] = 11
    limiter.warning("10.0.0.1", "refused %s", "10.0.0.1")
    assert records == [
        "refused 10.0.0.1",
        "refused 10.0.0.2",
        "refused 10.0.0.1 (and 49 more from 10.0.0.1 since its last line, not logged)",
    ]


def test_disconnect_hooks_get_the_connection_id() -> None:
    """current_connection() inside a request, and the hook with the same id once that
    connection closes (a hook that raises does not stop the others)."""
    from multiprocessing.managers import BaseManager

    from distproc import server

    seen: list[int] = []
    ended: list[int] = []
    done = threading.Event()

    class _Obj:
        def which(self) -> int:
            seen.append(server.current_connection())
            return seen[-1]

    obj = _Obj()

    class M(server.MasterManager):
        pass

    M.register("get_obj", callable=lambda: obj, exposed=("which",))
    srv = server.GuardedServer(M._registry, ("127.0.0.1", 0), b"key")

    def bad_hook(cid: int) -> None:
        raise RuntimeError("a hook that fails")

    def hook(cid: int) -> None:
        ended.append(cid)
        if cid in seen:
            done.set()

    srv.add_disconnect_hook(bad_hook)
    srv.add_disconnect_hook(hook)
    threading.Thread(target=srv.accepter, daemon=True).start()
    try:

        class C(BaseManager):
            pass

        C.register("get_obj")
        m = C(address=srv.address, authkey=b"key")
        m.connect()
        proxy = m.get_obj()
        cid = proxy.which()
        assert cid > 0 and server.current_connection() == 0
        assert proxy.which() == cid  # the same connection for the same thread
        proxy._tls.connection.close()  # end that proxy's connection
        assert done.wait(5), (seen, ended)
        assert cid in ended
    finally:
        srv.stop_event.set()
        srv.listener.close()
