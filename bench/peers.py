"""Peer systems and transport limits, measured on this machine for side-by-side comparison.

Every function returns ``{"name", "tasks", "seconds", "rate", "runs", ...}`` (median of
``repeat`` runs; ``rate`` is tasks or round trips per second) or ``{"name", "skipped"}``.
All servers listen on 127.0.0.1 only; every process started here is stopped before returning.

CLI: ``python -m bench.peers [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.connection import Client, Connection, Listener
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import Any

from bench.common import (
    LOOPBACK,
    REPO_ROOT,
    SPAWN,
    STARTUP_TIMEOUT,
    free_port,
    measure,
    pythonpath_env,
    server_process,
    skipped,
    stop_process,
    wait_until,
    warm_shutdown,
)
from bench.tiny import square, square_list

AUTHKEY = b"distproc-bench"
MSG = b"12345678"  # the "small message": 8 bytes
WARMUP = 200  # untimed round trips before each timed run
RUN_TIMEOUT = 120.0  # per timed run, for measurements that can otherwise wait forever

# Default sizes: the full default run takes ~75-80 s on 2 cores.
N_RAW = 20000  # transport round trips
N_DASK_TASK = 2000  # Dask manages ~hundreds of tasks/s: 2000 is enough for a stable rate
N_DASK_CHUNKED = 20000
N_RQ_SIMPLE = 3000
N_RQ_FORK = 500  # fork-per-job worker
#: Debian's redis-server; the bench never uses a running one: it starts its own, on
#: 127.0.0.1 only, without persistence, and stops it after the row (``_redis_server``)
REDIS_FIX = "apt-get install -y redis-server"


# --------------------------------------------------------------------------- servers (spawned)


def _tcp_echo_server(ready: Connection) -> None:
    """Echo server: one client at a time, echoes whatever arrives."""
    srv = socket.create_server((LOOPBACK, 0))
    ready.send(srv.getsockname()[:2])
    ready.close()
    buf = bytearray(4096)
    view = memoryview(buf)
    while True:
        sock, _ = srv.accept()
        with sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while k := sock.recv_into(buf):
                sock.sendall(view[:k])


def _mp_echo_server(ready: Connection, pickled: bool) -> None:
    """``multiprocessing.connection`` echo server (authkey), one client at a time."""
    with Listener((LOOPBACK, 0), authkey=AUTHKEY) as listener:
        ready.send(listener.address)
        ready.close()
        while True:
            with listener.accept() as conn, contextlib.suppress(EOFError, ConnectionError):
                if pickled:
                    while True:
                        conn.send(conn.recv())
                else:
                    while True:
                        conn.send_bytes(conn.recv_bytes())


class Pingable:
    """Object served by the BaseManager; ``ping`` is the trivial method we call remotely."""

    def ping(self, x: Any = None) -> Any:
        """Return ``x`` unchanged."""
        return x


_PINGABLE = Pingable()


def get_pingable() -> Pingable:
    """Module-level callable registered on the manager (a shared singleton per server)."""
    return _PINGABLE


class BenchManager(BaseManager):
    """BaseManager exposing :func:`get_pingable`."""


BenchManager.register("get_pingable", callable=get_pingable)


# --------------------------------------------------------------------------- transport limits


def _check_echo(got: Any, want: Any) -> None:
    if got != want:
        raise RuntimeError(f"echo mismatch: {got!r} != {want!r}")


def tcp_pingpong(n: int = N_RAW, repeat: int = 3, size: int = len(MSG)) -> dict[str, Any]:
    """Raw TCP ping-pong (TCP_NODELAY) of ``size``-byte messages; round trips/s."""
    msg = (MSG * (size // len(MSG) + 1))[:size]
    with server_process(_tcp_echo_server) as addr:
        sock = socket.create_connection(addr, timeout=RUN_TIMEOUT)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buf = bytearray(size)
            view = memoryview(buf)

            def roundtrips(count: int) -> None:
                for _ in range(count):
                    sock.sendall(msg)
                    got = 0
                    while got < size:
                        k = sock.recv_into(view[got:])
                        if not k:
                            raise ConnectionError("echo server closed the connection")
                        got += k

            def once() -> float:
                roundtrips(WARMUP)
                t0 = time.perf_counter()
                roundtrips(n)
                return time.perf_counter() - t0

            res = measure("tcp ping-pong (raw socket)", n, once, repeat, message_bytes=size)
            _check_echo(bytes(buf), msg)
            return res
        finally:
            sock.close()


def mp_connection_roundtrips(
    n: int = N_RAW, repeat: int = 3, pickled: bool = False
) -> dict[str, Any]:
    """``multiprocessing.connection`` Listener/Client round trips/s of an 8-byte message.

    ``pickled=False`` uses ``send_bytes``/``recv_bytes``; ``pickled=True`` uses ``send``/``recv``
    (pickle framing, as ``multiprocessing.managers`` does).
    """
    with server_process(_mp_echo_server, pickled) as addr, Client(addr, authkey=AUTHKEY) as conn:
        if pickled:
            obj: Any = ("ping", 1)

            def roundtrips(count: int) -> None:
                for _ in range(count):
                    conn.send(obj)
                    conn.recv()

        else:
            obj = MSG

            def roundtrips(count: int) -> None:
                for _ in range(count):
                    conn.send_bytes(MSG)
                    conn.recv_bytes()

        def once() -> float:
            roundtrips(WARMUP)
            t0 = time.perf_counter()
            roundtrips(n)
            return time.perf_counter() - t0

        name = "mp.connection round trip" + (" (send/recv pickle)" if pickled else " (bytes)")
        res = measure(name, n, once, repeat, pickled=pickled)
        if pickled:
            conn.send(obj)
            _check_echo(conn.recv(), obj)
        else:
            conn.send_bytes(obj)
            _check_echo(conn.recv_bytes(), obj)
        return res


def _proxy_calls(manager: BenchManager, n: int, repeat: int) -> dict[str, Any]:
    """Time proxy calls; the proxy dies (decref) on return, while the server is still up."""
    proxy = manager.get_pingable()  # type: ignore[attr-defined]
    ping = proxy.ping

    def roundtrips(count: int) -> None:
        for i in range(count):
            ping(i)

    def once() -> float:
        roundtrips(WARMUP)
        t0 = time.perf_counter()
        roundtrips(n)
        return time.perf_counter() - t0

    res = measure("BaseManager proxy call", n, once, repeat)
    _check_echo(ping(42), 42)
    return res


def basemanager_call_roundtrips(n: int = N_RAW, repeat: int = 3) -> dict[str, Any]:
    """BaseManager proxy method calls/s (server in its own process): our per-call floor."""
    manager = BenchManager(address=(LOOPBACK, 0), authkey=AUTHKEY, ctx=SPAWN)
    manager.start()
    try:
        return _proxy_calls(manager, n, repeat)
    finally:
        manager.shutdown()
        if manager._process is not None:  # type: ignore[attr-defined]
            stop_process(manager._process)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- Dask


@contextlib.contextmanager
def _dask_client(workers: int) -> Iterator[Any]:
    """LocalCluster of ``workers`` single-threaded processes, loopback only, no dashboard."""
    from dask.distributed import Client as DaskClient
    from dask.distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host=LOOPBACK,
        scheduler_port=0,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    try:
        with DaskClient(cluster, timeout=STARTUP_TIMEOUT) as client:
            client.wait_for_workers(workers, timeout=STARTUP_TIMEOUT)
            yield client
    finally:
        cluster.close(timeout=STARTUP_TIMEOUT)


def _dask_map_gather(client: Any, fn: Callable[[Any], Any], items: list[Any]) -> tuple[float, Any]:
    """Time ``client.map`` + gather; ``pure=False`` so repeats are not served from cache."""
    from dask.distributed import wait

    t0 = time.perf_counter()
    futures = client.map(fn, items, pure=False)
    wait(futures, timeout=RUN_TIMEOUT)
    results = client.gather(futures)
    dt = time.perf_counter() - t0
    del futures
    return dt, results[-1]


def dask_per_task(n: int = N_DASK_TASK, workers: int = 2, repeat: int = 3) -> dict[str, Any]:
    """Dask distributed, one task per item: ``client.map(square, range(n))`` + gather."""
    with _dask_client(workers) as client:
        _dask_map_gather(client, square, list(range(50)))  # warm-up: workers import bench.tiny

        def once() -> float:
            dt, last = _dask_map_gather(client, square, list(range(n)))
            _check_echo(last, (n - 1) ** 2)
            return dt

        return measure("dask per-task", n, once, repeat, workers=workers)


def dask_chunked(
    n: int = N_DASK_CHUNKED, chunk: int = 256, workers: int = 2, repeat: int = 3
) -> dict[str, Any]:
    """Dask distributed over chunks of ``chunk`` items (``square_list``); rate in items/s."""
    chunks = [list(range(i, min(i + chunk, n))) for i in range(0, n, chunk)]
    with _dask_client(workers) as client:
        _dask_map_gather(client, square_list, chunks[:4])

        def once() -> float:
            dt, last = _dask_map_gather(client, square_list, chunks)
            _check_echo(last[-1], (n - 1) ** 2)
            return dt

        return measure(
            f"dask chunked ({chunk}/task)",
            n,
            once,
            repeat,
            workers=workers,
            chunk=chunk,
            dask_tasks=len(chunks),
        )


# --------------------------------------------------------------------------- RQ


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@contextlib.contextmanager
def _redis_server(redis_bin: str, workdir: Path) -> Iterator[str]:
    """Private redis-server on 127.0.0.1 (no persistence); yields its URL."""
    import redis

    proc: subprocess.Popen[bytes] | None = None
    log = workdir / "redis.log"
    try:
        for _attempt in range(3):  # a picked free port can be taken before redis binds it
            port = free_port()
            cmd = [
                redis_bin,
                "--port",
                str(port),
                "--bind",
                LOOPBACK,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
                "--logfile",
                str(log),
            ]
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            conn = redis.Redis(host=LOOPBACK, port=port, socket_connect_timeout=1)

            def up(c: redis.Redis = conn, p: subprocess.Popen[bytes] = proc) -> bool:
                if p.poll() is not None:
                    return True
                try:
                    return bool(c.ping())
                except redis.ConnectionError:
                    return False

            wait_until(up, STARTUP_TIMEOUT, 0.02, "redis-server")
            conn.close()
            if proc.poll() is None:
                break
        else:
            raise RuntimeError(f"redis-server failed to start:\n{_tail(log)}")
        yield f"redis://{LOOPBACK}:{port}/0"
    finally:
        stop_process(proc)


def rq_per_task(
    n: int = N_RQ_SIMPLE,
    workers: int = 2,
    repeat: int = 3,
    worker_class: str = "SimpleWorker",
    enqueue_batch: int = 500,
) -> dict[str, Any]:
    """RQ: ``n`` jobs of ``bench.tiny.square`` run by ``workers`` worker processes.

    Workers (``rq worker -w rq.worker.<worker_class>``) are started and registered first; each
    timed run covers enqueueing (``enqueue_many`` in pipelined batches of ``enqueue_batch``)
    until all ``n`` jobs are in the finished registry. ``SimpleWorker`` runs jobs in-process;
    ``Worker`` (rq's default) forks a work horse per job.
    """
    name = f"rq per-task ({worker_class})"
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        return skipped(name, "redis-server not installed", REDIS_FIX)
    import redis
    from rq import Queue
    from rq.job import Job
    from rq.worker import BaseWorker

    with (
        tempfile.TemporaryDirectory(prefix="bench-rq-") as tmp,
        _redis_server(redis_bin, Path(tmp)) as url,
    ):
        conn = redis.Redis.from_url(url)
        queue = Queue(f"bench-{uuid.uuid4().hex[:8]}", connection=conn)
        procs: list[subprocess.Popen[bytes]] = []
        logs = [Path(tmp) / f"worker{i}.log" for i in range(workers)]
        try:
            for log in logs:
                cmd = [
                    sys.executable,
                    "-m",
                    "rq.cli",
                    "worker",
                    "-w",
                    f"rq.worker.{worker_class}",
                    "-u",
                    url,
                    "--path",
                    str(REPO_ROOT),
                    "--logging_level",
                    "WARNING",
                    queue.name,
                ]
                with log.open("wb") as out:
                    procs.append(
                        subprocess.Popen(
                            cmd,
                            cwd=REPO_ROOT,
                            env=pythonpath_env(),
                            stdin=subprocess.DEVNULL,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                        )
                    )

            def registered() -> bool:
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError(f"rq worker exited early:\n{_tail(logs[0])}")
                return BaseWorker.count(connection=conn, queue=queue) >= workers

            wait_until(registered, STARTUP_TIMEOUT, 0.05, "rq workers to register")
            finished = queue.finished_job_registry
            failed = queue.failed_job_registry

            def once() -> float:
                target = finished.get_job_count(cleanup=False) + n
                t0 = time.perf_counter()
                last: Job | None = None
                for lo in range(0, n, enqueue_batch):
                    datas = [
                        Queue.prepare_data(square, (i,))
                        for i in range(lo, min(lo + enqueue_batch, n))
                    ]
                    last = queue.enqueue_many(datas)[-1]

                def done() -> bool:
                    if failed.get_job_count(cleanup=False):
                        raise RuntimeError(f"rq jobs failed, e.g.: {failed.get_job_ids(0, 0)}")
                    if any(p.poll() is not None for p in procs):
                        raise RuntimeError(f"rq worker died:\n{_tail(logs[0])}")
                    return finished.get_job_count(cleanup=False) >= target

                wait_until(done, RUN_TIMEOUT, 0.005, "rq jobs to finish")
                dt = time.perf_counter() - t0
                assert last is not None
                _check_echo(Job.fetch(last.id, connection=conn).return_value(), (n - 1) ** 2)
                return dt

            return measure(name, n, once, repeat, workers=workers, worker_class=worker_class)
        finally:
            for p in procs:
                warm_shutdown(p)
            conn.close()


# --------------------------------------------------------------------------- suite / CLI


def suite(quick: bool = False) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """The measurements ``run_all`` performs, as (label, thunk) pairs."""
    r = 1 if quick else 3
    raw = 2000 if quick else N_RAW
    return [
        ("tcp", lambda: tcp_pingpong(raw, r)),
        ("mp-bytes", lambda: mp_connection_roundtrips(raw, r)),
        ("mp-pickle", lambda: mp_connection_roundtrips(raw, r, pickled=True)),
        ("basemanager", lambda: basemanager_call_roundtrips(raw, r)),
        ("dask", lambda: dask_per_task(300 if quick else N_DASK_TASK, repeat=r)),
        ("dask-chunked", lambda: dask_chunked(5000 if quick else N_DASK_CHUNKED, repeat=r)),
        ("rq-simple", lambda: rq_per_task(300 if quick else N_RQ_SIMPLE, repeat=r)),
        (
            "rq-fork",
            lambda: rq_per_task(100 if quick else N_RQ_FORK, repeat=r, worker_class="Worker"),
        ),
    ]


def run_all(quick: bool = False, log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Run every peer/transport measurement; a failing one yields ``{"name", "error"}``."""
    results: list[dict[str, Any]] = []
    for label, thunk in suite(quick):
        t0 = time.perf_counter()
        try:
            res = thunk()
        except Exception as exc:  # keep the rest of the suite running
            res = {"name": label, "error": f"{type(exc).__name__}: {exc}"}
        res["wall_seconds"] = round(time.perf_counter() - t0, 2)
        if log:
            log(f"{label}: {_fmt_rate(res)}  ({res['wall_seconds']}s)")
        results.append(res)
    return results


def _fmt_rate(res: dict[str, Any]) -> str:
    if "rate" in res:
        return f"{res['rate']:,.0f}/s"
    return f"skipped: {res['skipped']}" if "skipped" in res else f"ERROR: {res['error']}"


def format_table(results: list[dict[str, Any]]) -> str:
    """Plain-text table of name / tasks / median rate / per-run rates."""
    rows = [("name", "tasks", "rate/s", "runs")]
    for res in results:
        if "rate" in res:
            runs = " ".join(f"{x:,.0f}" for x in res["runs"])
            rows.append((res["name"], str(res["tasks"]), f"{res['rate']:,.0f}", runs))
        else:
            rows.append((res["name"], "-", _fmt_rate(res), ""))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip()
        for r in rows
    )


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small n, one run each")
    ap.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    args = ap.parse_args(argv)
    results = run_all(args.quick, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(json.dumps(results, indent=2) if args.json else format_table(results))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
