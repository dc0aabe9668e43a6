"""A flood of idle connections on the real cluster: more than the master's pids limit (256)
allows threads, held and reopened from a container on a cluster network; the workers keep
working and a new job completes while it lasts."""

from __future__ import annotations

import json
import secrets
import textwrap
import time

import docker
from e2e_harness import Up

from orchestrate import labels

FLOOD = 400  # connections held at once: past the master's pids 256
FLOOD_SECONDS = 45  # the flood ends by itself after this, whatever happens to the test

SCRIPT = textwrap.dedent(f"""
    import socket, time
    held, opened, t0 = [], 0, time.monotonic()
    while time.monotonic() - t0 < {FLOOD_SECONDS} and opened < 100 * {FLOOD}:
        alive = []
        for s in held:  # keep the ones still open, reopen the ones the master dropped
            try:
                s.setblocking(False)
                if s.recv(4096) == b"":
                    s.close()
                    continue
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                continue
            alive.append(s)
        held = alive
        while len(held) < {FLOOD} and opened < 100 * {FLOOD}:
            try:
                held.append(socket.create_connection(("e2e-default-master", 5000), timeout=2))
                opened += 1
            except OSError:
                break
        print("held", len(held), "opened", opened, flush=True)
        time.sleep(0.5)
    print("flood over", flush=True)
""")


def test_a_flood_past_the_pids_limit_does_not_stop_the_master(default_cluster: Up) -> None:
    assert default_cluster.code in (0, 3), default_cluster.stderr[-3000:]
    client = docker.from_env()
    status = json.loads(
        default_cluster.cli("status", "-f", str(default_cluster.file), "--json").stdout
    )
    net = next(n["engine_name"] for n in status["networks"] if n["name"] == "net-a")
    flood = client.containers.run(
        status["images"]["worker"],
        entrypoint=["python3", "-c", SCRIPT],
        name=f"e2e-flood-{secrets.token_hex(3)}",
        labels={labels.TEST: "e2e"},
        network=net,
        user="10001:10001",
        read_only=True,
        detach=True,
    )
    try:
        deadline = time.monotonic() + 20
        while f"held {FLOOD}".encode() not in flood.logs():
            assert time.monotonic() < deadline, flood.logs()[-2000:]
            time.sleep(0.5)
        t0 = time.monotonic()
        res = default_cluster.cli(
            "job", "-f", str(default_cluster.file), "--tasks", "200", "--json", timeout=40
        )
        took = time.monotonic() - t0
        logs = flood.logs()
        assert b"flood over" not in logs, "the flood ended before the job did"
        assert res.returncode == 0, res.stderr[-3000:]
        outcome = json.loads(res.stdout)
        assert outcome["report"]["totals"]["ok"] == 200, outcome["report"]["totals"]
        print(f"job of 200 tasks under a flood of {FLOOD} connections: {took:.1f}s")
        master = client.containers.get("e2e-default-master")
        text = master.logs().decode(errors="replace")
        assert "Traceback" not in text, text[-3000:]
        assert "refused" in text or "no complete handshake" in text, text[-3000:]
    finally:
        flood.remove(force=True)
