"""The master holds in the default cluster: a job of ten million in its 256 MiB container,
and the classic loss shown at once when a tutorial worker dies holding a task."""

from __future__ import annotations

import json
import secrets
import textwrap
from pathlib import Path

import docker
from e2e_harness import Up

from orchestrate import labels


def _master_memory_mib(client: docker.DockerClient) -> tuple[float, float]:
    """(VmRSS, VmHWM) of the master process, read from the host's /proc by its host pid."""
    master = client.containers.get("e2e-default-master")
    top = master.top(ps_args="-o pid,args")
    pid_col = top["Titles"].index("PID")
    args_col = len(top["Titles"]) - 1
    [pid] = [
        row[pid_col]
        for row in top["Processes"]
        if "distproc master" in row[args_col] and "docker-init" not in row[args_col]
    ]
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return (int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024)


def test_ten_million_tasks_in_the_default_master_container(default_cluster: Up) -> None:
    """A 10M-task job got the default master container (256m) OOM-killed within seconds;
    now it completes, three jobs of 1M after it too, and the memory comes back."""
    client = docker.from_env()
    start, _ = _master_memory_mib(client)
    res = default_cluster.cli(
        "job", "-f", str(default_cluster.file), "--kind", "square", "--tasks", "10000000",
        "--batch", "4096",
        "--json", timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    rep = json.loads(res.stdout)["report"]
    assert rep["totals"]["ok"] == 10_000_000 and rep["values"]["mode"] == "drop"
    for _ in range(3):
        res = default_cluster.cli(
            "job", "-f", str(default_cluster.file), "--kind", "square", "--tasks", "1000000",
            "--batch", "4096",
            timeout=600,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr[-3000:]
    after, peak = _master_memory_mib(client)
    master = client.containers.get("e2e-default-master")
    master.reload()
    assert master.attrs["State"]["OOMKilled"] is False and master.attrs["RestartCount"] == 0
    print(f"master: RSS {start:.1f} MiB before, {after:.1f} after 10M + 3x1M; peak {peak:.1f}")
    assert after - start < 12, (start, after)  # measured: about 7 MiB (README, Security)
    assert peak < 200, peak  # the container's limit is 256 MiB


def test_tutorial_worker_killed_holding_a_task_ends_the_classic_job_with_lost_1(
    default_cluster: Up,
) -> None:
    """The tutorial's rule, at-most-once, shown as it happens: a tutorial worker that takes
    a task and dies makes the job end promptly, exit 3, lost 1, naming who held it."""
    client = docker.from_env()
    status = json.loads(
        default_cluster.cli("status", "-f", str(default_cluster.file), "--json").stdout
    )
    key = (default_cluster.state / "e2e-default" / "authkey").read_text().strip()
    script = textwrap.dedent("""
        import os
        from multiprocessing.managers import BaseManager
        class QueueManager(BaseManager):
            pass
        QueueManager.register('get_task_queue')
        m = QueueManager(address=('e2e-default-master', 5000), authkey=open('/key','rb').read())
        m.connect()
        n = m.get_task_queue().get(timeout=120)
        print('took', n, flush=True)
        os._exit(1)  # dies holding it, as a crashed tutorial worker would
    """)
    keyfile = default_cluster.state / "thief-key"
    keyfile.write_text(key)
    keyfile.chmod(0o644)
    net = next(n["engine_name"] for n in status["networks"] if n["name"] == "net-a")
    thief = client.containers.create(
        status["images"]["worker"], entrypoint=["python3", "-c", script],
        name=f"e2e-thief-{secrets.token_hex(3)}", labels={labels.TEST: "e2e"}, network=net,
        user="10001:10001", read_only=True,
        volumes={str(keyfile): {"bind": "/key", "mode": "ro"}},
    )  # fmt: skip
    try:
        thief.start()
        thief.reload()
        thief_ip = thief.attrs["NetworkSettings"]["Networks"][net]["IPAddress"]
        res = default_cluster.cli(
            "job", "-f", str(default_cluster.file), "--protocol", "classic", "--kind", "square",
            "--tasks", "3000",
            "--job-timeout", "300", "--json", timeout=400,
        )  # fmt: skip
        assert res.returncode == 3, res.stderr[-3000:]
        outcome = json.loads(res.stdout)
        rep = outcome["report"]
        assert rep["totals"]["lost"] == 1 and rep["totals"]["ok"] == 2999, rep["summary"]
        assert rep["elapsed_seconds"] < 120  # ended as the connection closed, not at 300 s
        [lost] = rep["lost"]
        assert lost["peer"] == thief_ip and lost["worker"] == f"classic@{thief_ip}"
        assert f"held by classic@{thief_ip}" in rep["summary"]
        assert thief.wait(timeout=30)["StatusCode"] == 1
        assert b"took" in thief.logs()
    finally:
        thief.remove(force=True)
