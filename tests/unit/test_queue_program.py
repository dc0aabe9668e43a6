"""The queue program end to end on loopback: real master and worker processes, real TCP."""

from __future__ import annotations

import json
import platform
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from harness import Procs


def _ids_once(report: dict) -> None:
    """Every id has exactly one result, and the totals agree with the per-task list."""
    results = report["results"]
    ids = [r["id"] for r in results]
    assert ids == list(range(report["totals"]["tasks"]))
    assert all(r["state"] == "ok" for r in results), [r for r in results if r["state"] != "ok"]
    assert sum(w["tasks"] for w in report["workers"]) == len(results)


def test_job_completes_with_one_result_per_id(procs: Procs) -> None:
    procs.master()
    procs.worker("--name", "w1")
    procs.worker("--name", "w2")
    procs.wait_workers(2)
    code, rep = procs.submit("--kind", "square", "--tasks", "5000", "--batch", "64", "--results")
    assert code == 0, rep["checks"]
    assert rep["ok"] and rep["totals"]["ok"] == 5000 and rep["totals"]["duplicates"] == 0
    _ids_once(rep)
    assert {w["identity"]["name"] for w in rep["workers"]} == {"w1", "w2"}
    for w in rep["workers"]:
        # the peer the server saw, and the local address the worker claims, agree
        assert w["peers"] == ["127.0.0.1"] and w["identity"]["local_ip"] == "127.0.0.1"
        assert w["identity"]["netns"].startswith("net:[")
        assert w["identity"]["python"] == platform.python_version()  # which Python ran it
    assert rep["master"]["python"] == platform.python_version()
    assert rep["results_by_peer"] == {"127.0.0.1": 5000}
    assert rep["guarantee"] == "at-least-once execution, exactly-once accounting"


def test_values_are_checked(procs: Procs) -> None:
    """The master recomputes cpu values (test_report.py shows the check failing)."""
    procs.master()
    procs.worker("--name", "w1")
    procs.wait_workers(1)
    code, rep = procs.submit("--kind", "cpu", "--tasks", "20", "--size", "3000")
    assert code == 0 and rep["ok"]
    checks = {c["name"]: c for c in rep["checks"]}
    assert checks["values_correct"]["ok"], checks
    assert "20/20 ok values match cpu()" in checks["values_correct"]["evidence"]


TUTORIAL_WORKER = """
import time, sys, queue
from multiprocessing.managers import BaseManager

class QueueManager(BaseManager):
    pass

QueueManager.register('get_task_queue')
QueueManager.register('get_result_queue')

server_addr = '127.0.0.1'
print('Connect to server %s...' % server_addr)
m = QueueManager(address=(server_addr, PORT), authkey=KEY)
m.connect()
task = m.get_task_queue()
result = m.get_result_queue()
for i in range(COUNT):
    try:
        n = task.get(timeout=1)
        print('run task %d * %d...' % (n, n))
        r = '%d * %d = %d' % (n, n, n*n)
        result.put(r)
    except queue.Empty:
        print('task queue is empty.')
print('worker exit.')
"""


def test_tutorial_worker_joins_in_classic_mode(procs: Procs) -> None:
    procs.master()
    script = (
        TUTORIAL_WORKER.replace("PORT", str(procs.port))
        .replace("KEY", repr(procs.key.encode()))
        .replace("COUNT", "60")
    )
    tutorial = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    code, rep = procs.submit("--protocol", "classic", "--tasks", "50", "--results", timeout=60)
    out, _ = tutorial.communicate(timeout=30)
    assert "worker exit." in out
    assert code == 0, rep["checks"]
    assert rep["guarantee"].startswith("at-most-once")
    assert rep["totals"]["ok"] == 50 and rep["totals"]["lost"] == 0
    _ids_once(rep)
    [w] = rep["workers"]
    assert w["id"] == "classic@127.0.0.1" and w["tasks"] == 50


def test_classic_worker_dying_loses_its_task(procs: Procs) -> None:
    """At-most-once, as in the tutorial: a task taken by a dead worker is reported lost."""
    procs.master()
    script = textwrap.dedent(f"""
        import os
        from multiprocessing.managers import BaseManager
        class M(BaseManager): pass
        M.register('get_task_queue')
        m = M(address=('127.0.0.1', {procs.port}), authkey={procs.key.encode()!r})
        m.connect()
        m.get_task_queue().get(timeout=10)
        os._exit(1)
    """)
    thief = subprocess.Popen([sys.executable, "-c", script])
    time.sleep(0.5)  # connected and waiting in get() before the job starts
    sub = procs.submit_bg("--protocol", "classic", "--tasks", "30", "--timeout", "8")
    assert thief.wait(timeout=20) == 1  # it took one task and died with it
    procs.worker("--name", "classic-ok", "--protocol", "classic")
    out, _ = sub.communicate(timeout=60)
    code, rep = sub.returncode, json.loads(out)
    assert code == 3
    assert rep["totals"]["lost"] == 1 and rep["totals"]["ok"] == 29
    [ours] = rep["workers"]  # our worker in classic mode keeps the identity it said hello with
    assert ours["identity"]["name"] == "classic-ok" and ours["tasks"] == 29
    checks = {c["name"]: c["ok"] for c in rep["checks"]}
    assert checks["every_id_accounted"] and not checks["all_ok"]


def test_sigkilled_worker_tasks_are_rerun_exactly_once(procs: Procs) -> None:
    procs.master()
    victim = procs.worker("--name", "victim", "--concurrency", "4")
    procs.wait_workers(1)
    sub = procs.submit_bg(
        "--kind",
        "io",
        "--size",
        "50",
        "--tasks",
        "200",
        "--batch",
        "8",
        "--lease-seconds",
        "1.5",
        "--results",
    )
    procs.wait_done(1)  # the victim holds leases now, mid-batch
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    procs.worker("--name", "survivor", "--concurrency", "8")
    out, _ = sub.communicate(timeout=90)
    rep = json.loads(out)
    assert sub.returncode == 0, rep["checks"]
    assert rep["totals"]["ok"] == 200 and rep["totals"]["dead"] == 0
    assert rep["totals"]["expired_leases"] >= 1 and rep["totals"]["retries"] >= 1
    _ids_once(rep)
    names = {w["identity"]["name"]: w["tasks"] for w in rep["workers"]}
    assert names["survivor"] > 0 and names.get("victim", 0) < 200


def test_poison_task_is_dead_lettered(procs: Procs) -> None:
    procs.master()
    procs.worker("--name", "w1", "--mode", "inline")
    procs.wait_workers(1)
    code, rep = procs.submit(
        "--kind",
        "distproc_kinds.chaos:poison",
        "--tasks",
        "40",
        "--batch",
        "5",
        "--max-attempts",
        "3",
    )
    assert code == 3  # not every task ended ok: the verdict says so
    assert rep["totals"]["ok"] == 39 and rep["totals"]["dead"] == 1
    [dead] = rep["dead_letters"]
    assert dead["id"] == 13 and dead["attempts"] == 3
    assert "poison" in dead["error"]
    checks = {c["name"]: c["ok"] for c in rep["checks"]}
    assert checks == {"every_id_accounted": True, "values_correct": True, "all_ok": False}


def test_task_that_kills_its_process_is_dead_lettered(procs: Procs) -> None:
    """A pool process dies on task 13: innocents in the same batch still finish, 13 is buried."""
    procs.master()
    procs.worker("--name", "w1", "--mode", "processes", "--concurrency", "2")
    procs.wait_workers(1)
    code, rep = procs.submit(
        "--kind",
        "distproc_kinds.chaos:crash",
        "--tasks",
        "30",
        "--batch",
        "6",
        "--max-attempts",
        "3",
    )
    assert code == 3 and rep["totals"]["ok"] == 29 and rep["totals"]["dead"] == 1, rep["totals"]
    [dead] = rep["dead_letters"]
    assert dead["id"] == 13 and dead["attempts"] == 3 and "crashed" in dead["error"]


def test_errors_final_without_retry(procs: Procs) -> None:
    procs.master()
    procs.worker("--name", "w1", "--mode", "inline")
    procs.wait_workers(1)
    code, rep = procs.submit(
        "--kind", "distproc_kinds.chaos:poison", "--tasks", "20", "--no-retry-errors"
    )
    assert code == 3 and rep["totals"]["failed"] == 1 and rep["totals"]["dead"] == 0
    assert rep["failures"][0]["attempts"] == 1


def _raw(port: int, data: bytes, wait_close: float = 5.0) -> bytes:
    """Send ``data`` and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_close) as s:
        if data:
            s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(4096)
            except TimeoutError:
                raise AssertionError("the server kept a bad connection open") from None
            except ConnectionResetError:
                return b"".join(chunks)  # closed with our bytes unread: a reset
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def test_wrong_authkey_is_rejected_while_the_job_goes_on(procs: Procs) -> None:
    master = procs.master()
    procs.worker("--name", "w1")
    procs.wait_workers(1)
    sub = procs.submit_bg("--kind", "io", "--size", "5", "--tasks", "400")
    bad = procs.tmp / "bad-key"
    bad.write_text("not-the-key")
    r = procs.cli("status", "--master", procs.master_addr, "--authkey-file", str(bad))
    assert r.returncode == 1 and "rejected the authkey" in r.stderr
    out, _ = sub.communicate(timeout=60)
    assert sub.returncode == 0 and json.loads(out)["totals"]["ok"] == 400
    procs.stop_all()
    log = procs.log_of(master)
    assert "authentication failed" in log
    assert procs.key not in log and "not-the-key" not in log


def test_garbage_and_silence_do_not_stop_the_master(procs: Procs) -> None:
    # every refusal logged (they all come from 127.0.0.1: rate-limited, most would not be)
    master = procs.master("--handshake-timeout", "1", "--refusal-log-interval", "0")
    procs.worker("--name", "w1")
    procs.wait_workers(1)
    silent = socket.create_connection(("127.0.0.1", procs.port))
    _raw(procs.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    _raw(procs.port, bytes(range(256)) * 4)
    _raw(procs.port, b"\x00\x00")  # a short frame, then silence: the bound drops it
    silent.settimeout(10)  # far past the 1 s bound: recv() times out if the bound fails
    assert silent.recv(4096)  # the challenge ...
    assert silent.recv(4096) == b""  # ... then the close, once the handshake bound passes
    silent.close()
    trickle = socket.create_connection(("127.0.0.1", procs.port))
    trickle.settimeout(10)
    trickle.recv(4096)
    closed = False
    frame = b"\x00\x00\x00\x20" + b"x" * 32  # a well-formed 32-byte answer, but slow:
    for byte in frame:  # a byte every 0.3 s: each read is quick, the whole is too slow
        try:
            trickle.sendall(bytes([byte]))
        except OSError:
            closed = True
            break
        time.sleep(0.3)
    trickle.close()
    assert closed, "a client trickling bytes outlived the 1 s handshake bound"
    code, rep = procs.submit("--tasks", "2000")
    assert code == 0 and rep["totals"]["ok"] == 2000
    procs.stop_all()
    log = procs.log_of(master)
    assert log.count("not a distproc client") >= 2, log
    assert log.count("no complete handshake within 1s") >= 3, log


def test_unpicklable_payload_after_auth_is_dropped(procs: Procs) -> None:
    from multiprocessing.connection import Client

    master = procs.master()
    procs.worker("--name", "w1")
    conn = Client(("127.0.0.1", procs.port), authkey=procs.key.encode())
    conn.send_bytes(b"\x80\x04this is not a pickle")
    assert conn.poll(5), "the server neither answered nor dropped the connection"
    with pytest.raises(EOFError):
        conn.recv_bytes()  # dropped, not answered with a traceback
    conn.close()
    code, rep = procs.submit("--tasks", "500")
    assert code == 0 and rep["totals"]["ok"] == 500
    procs.stop_all()
    assert "unreadable request" in procs.log_of(master)


def test_workers_reconnect_after_master_restart(procs: Procs) -> None:
    first = procs.master()
    w = procs.worker("--name", "w1")
    st = procs.wait_workers(1)
    pid = st["workers"][0]["identity"]["pid"]
    first.send_signal(signal.SIGKILL)
    first.wait()
    time.sleep(1.0)
    procs.master()  # same port, new instance
    code, rep = procs.submit("--tasks", "3000", timeout=60)
    assert code == 0 and rep["totals"]["ok"] == 3000
    [worker] = rep["workers"]
    assert worker["identity"]["pid"] == pid == w.pid  # the same process reconnected by itself


def test_sigterm_worker_releases_and_exits_zero(procs: Procs) -> None:
    procs.master()
    # one thread and a prefetch of two: one task is queued, not started, nearly all the time
    w = procs.worker("--name", "leaver", "--concurrency", "1", "--mode", "threads")
    procs.wait_workers(1)
    sub = procs.submit_bg(
        "--kind", "io", "--size", "200", "--tasks", "40", "--batch", "4", "--lease-seconds", "30"
    )
    procs.wait_done(1)  # one task running, one queued and not started
    w.send_signal(signal.SIGTERM)
    assert w.wait(timeout=15) == 0
    assert "released" in procs.log_of(w)
    procs.worker("--name", "finisher", "--concurrency", "8", "--mode", "threads")
    out, _ = sub.communicate(timeout=60)
    rep = json.loads(out)
    # released tasks came back at once (no 30 s lease wait) and were not charged an attempt
    assert sub.returncode == 0 and rep["totals"]["expired_leases"] == 0
    assert rep["totals"]["retries"] == 0


def test_no_authkey_is_a_usage_error(procs: Procs) -> None:
    env = procs.env()
    env.pop("DISTPROC_AUTHKEY_FILE")
    r = subprocess.run(
        [sys.executable, "-m", "distproc", "master", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert r.returncode == 2
    assert "no authkey" in r.stderr and "Traceback" not in r.stderr


def test_cpu_job_under_every_start_method(procs: Procs) -> None:
    procs.master()
    for method in ("fork", "spawn", "forkserver"):
        procs.worker("--name", method, "--start-method", method, "--concurrency", "1")
    procs.wait_workers(3)
    code, rep = procs.submit("--kind", "cpu", "--size", "2000", "--tasks", "60", "--batch", "2")
    assert code == 0, rep["checks"]
    assert {w["identity"]["name"] for w in rep["workers"]} == {"fork", "spawn", "forkserver"}


def test_hung_worker_late_results_are_duplicates_not_reported_twice(procs: Procs) -> None:
    """SIGSTOP a worker holding leases: they expire, another worker re-runs them; when the
    hung worker wakes up and acknowledges, its results are counted as duplicates only."""
    procs.master()
    hung = procs.worker("--name", "hung", "--mode", "threads", "--concurrency", "8")
    procs.wait_workers(1)
    sub = procs.submit_bg(
        "--kind", "io", "--size", "400", "--tasks", "40", "--batch", "8", "--lease-seconds", "1",
        "--results",
    )  # fmt: skip
    procs.wait_done(1)  # the hung worker holds a batch of 400 ms tasks
    hung.send_signal(signal.SIGSTOP)
    procs.worker("--name", "rescuer", "--mode", "threads", "--concurrency", "8")
    out, _ = sub.communicate(timeout=60)
    assert sub.returncode == 0 and json.loads(out)["ok"]
    hung.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 10
    while True:
        r = procs.cli("report", "--master", procs.master_addr, "--results")
        rep = json.loads(r.stdout)
        if rep["totals"]["duplicates"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert rep["totals"]["duplicates"] >= 1, rep["totals"]
    assert rep["totals"]["ok"] == 40 and rep["totals"]["expired_leases"] >= 1
    _ids_once(rep)


def test_task_hung_in_a_live_worker_is_taken_back_after_task_timeout(procs: Procs) -> None:
    """Heartbeats keep a lease alive only up to task_timeout; then the hung task comes back,
    and after max_attempts it is dead-lettered. SIGTERM then cannot wait for the hung thread:
    the worker hands it back after --drain-timeout and still exits 0."""
    procs.master()
    w = procs.worker(
        "--name", "w1", "--mode", "threads", "--concurrency", "4", "--drain-timeout", "1"
    )
    procs.wait_workers(1)
    code, rep = procs.submit(
        "--kind",
        "distproc_kinds.chaos:hang",
        "--tasks",
        "20",
        "--batch",
        "4",
        "--lease-seconds",
        "1",
        "--task-timeout",
        "2",
        "--max-attempts",
        "2",
        timeout=60,
    )
    assert code == 3 and rep["totals"]["ok"] == 19 and rep["totals"]["dead"] == 1
    [dead] = rep["dead_letters"]
    assert dead["id"] == 13 and dead["attempts"] == 2 and "task_timeout" in dead["error"]
    w.send_signal(signal.SIGTERM)
    assert w.wait(timeout=20) == 0
    assert "drain timeout" in procs.log_of(w)


def test_unpicklable_result_becomes_an_error_and_the_worker_lives(procs: Procs) -> None:
    procs.master()
    procs.worker("--name", "w1", "--mode", "threads", "--concurrency", "2")
    procs.wait_workers(1)
    code, rep = procs.submit(
        "--kind", "distproc_kinds.chaos:unpicklable", "--tasks", "20", "--batch", "5", timeout=60
    )
    assert code == 3 and rep["totals"]["ok"] == 19 and rep["totals"]["dead"] == 1
    assert "cannot be pickled" in rep["dead_letters"][0]["error"]
    assert procs.status()["workers"][0]["connected"]


def test_kind_that_fails_to_import_fails_its_tasks_not_the_worker(procs: Procs) -> None:
    procs.master()
    procs.worker("--name", "w1", "--mode", "inline")
    procs.wait_workers(1)
    code, rep = procs.submit(
        "--kind", "distproc_kinds.broken:anything", "--tasks", "3", "--max-attempts", "1"
    )
    assert code == 3 and rep["totals"]["dead"] == 3
    assert "broken at import time" in rep["dead_letters"][0]["error"]
    code, rep = procs.submit("--tasks", "100")  # the same worker goes on
    assert code == 0 and rep["totals"]["ok"] == 100


def test_submit_reports_a_master_lost_mid_job(procs: Procs) -> None:
    master = procs.master()
    procs.worker("--name", "w1", "--mode", "threads", "--concurrency", "1")
    procs.wait_workers(1)
    sub = procs.submit_bg("--kind", "io", "--size", "100", "--tasks", "100")
    procs.wait_done(1)
    master.send_signal(signal.SIGKILL)
    sub.wait(timeout=30)
    assert sub.returncode == 1


def test_master_exit_when_done_hears_sigterm(procs: Procs) -> None:
    """With no worker the job cannot end; SIGTERM cancels it and the report still comes."""
    master = procs.master("--tasks", "10", "--exit-when-done")
    time.sleep(0.5)
    master.send_signal(signal.SIGTERM)
    assert master.wait(timeout=20) == 3
    procs.stop_all()
    assert '"dead": 10' in procs.log_of(master)


def test_cancel_ends_the_current_job(procs: Procs) -> None:
    procs.master()
    sub = procs.submit_bg("--tasks", "50")  # no worker: it would wait forever
    time.sleep(1.0)
    r = procs.cli("cancel", "--master", procs.master_addr)
    assert r.returncode == 0 and json.loads(r.stdout)["totals"]["dead"] == 50
    out, _ = sub.communicate(timeout=30)
    assert sub.returncode == 3 and json.loads(out)["totals"]["dead"] == 50


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["master", "--port", "99999"], "must be between 0 and 65535"),
        (["--log-level", "loud", "status"], "invalid choice"),
        (["worker", "--master", "127.0.0.1:99999"], "the port must be 0-65535"),
        (["worker", "--threads", "-1"], "must be >= 1"),
        (["submit", "--lease-seconds", "inf"], "must be between"),
        (["submit", "--tasks", "-3"], "must be >= 0"),
        (["submit", "--kind", "no such kind"], "must be one of square, cpu, io"),
    ],
)
def test_bad_arguments_are_usage_errors(procs: Procs, args: list[str], fragment: str) -> None:
    r = procs.cli(*args)
    assert r.returncode == 2, r.stderr
    assert fragment in r.stderr and "Traceback" not in r.stderr


def test_result_the_master_cannot_unpickle_ends_as_an_error_not_a_loop(procs: Procs) -> None:
    """The master drops the connection each time; after 3 tries the worker sends an error."""
    master = procs.master()
    procs.worker("--name", "w1", "--mode", "inline")
    procs.wait_workers(1)
    code, rep = procs.submit("--kind", "distproc_kinds.chaos:unloadable", "--tasks", "15",
                             "--batch", "1", "--max-attempts", "2", timeout=90)  # fmt: skip
    assert code == 3 and rep["totals"]["ok"] == 14 and rep["totals"]["dead"] == 1
    assert "result not delivered" in rep["dead_letters"][0]["error"]
    procs.stop_all()
    assert procs.log_of(master).count("unreadable request") >= 3
