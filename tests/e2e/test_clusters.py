"""Real clusters on the real engine: every task crossed the network and came back."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import textwrap

import docker
from e2e_harness import Up

from orchestrate import labels


def _all_pass(up: Up) -> dict:
    assert up.code == 0, up.stderr[-3000:]
    failed = [c for c in up.outcome["checks"] if not c["ok"]]
    assert not failed, failed
    return up.outcome


def _subnets_of(outcome: dict) -> set[str]:
    nets = outcome["status"]["networks"]
    out = set()
    for ip in outcome["report"]["results_by_peer"]:
        for n in nets:
            if ipaddress.ip_address(ip) in ipaddress.ip_network(n["subnet"]):
                out.add(n["name"])
    return out


def test_default_topology(default_cluster: Up) -> None:
    outcome = _all_pass(default_cluster)
    names = [c["name"] for c in outcome["checks"]]
    assert names == [
        "workers_connected",
        "tasks_answered_once",
        "every_worker_contributed",
        "results_crossed_the_network",
        "results_crossed_machines",
        "separate_network_namespaces",
        "isolation",
    ]
    machines = next(c for c in outcome["checks"] if c["name"] == "results_crossed_machines")
    assert machines["status"] == "skipped" and "one machine" in machines["evidence"]
    rep = outcome["report"]
    assert rep["totals"]["ok"] == rep["totals"]["tasks"] == 400
    assert _subnets_of(outcome) == {"net-a", "net-b"}  # tasks crossed two subnets
    assert len(outcome["summary"]) == 4 and all(r["tasks"] > 0 for r in outcome["summary"])
    for ip in rep["results_by_peer"]:
        assert not ipaddress.ip_address(ip).is_loopback


def test_status_json_has_the_documented_shape(default_cluster: Up) -> None:
    res = default_cluster.cli("status", "-f", str(default_cluster.file), "--json")
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert [n["name"] for n in st["networks"]] == ["net-a", "net-b"]
    assert all(n["engine_name"].startswith("e2e-default-") for n in st["networks"])
    assert set(st["master"]) >= {"container", "addresses", "port"}
    assert set(st["master"]["addresses"]) == {"net-a", "net-b"}
    assert st["master"]["port"] == 5000
    assert [w["group"] for w in st["workers"]] == ["alpha", "alpha", "beta", "beta"]
    assert all(w["state"] == "running" and w["addresses"] for w in st["workers"])
    assert set(st["images"]) == {"master", "worker"} and st["authkey_file"].endswith("authkey")
    assert st["backend"] == "local" and len(st["nodes"]) == 1
    assert st["master"]["node"] == st["nodes"][0]["name"]
    assert {w["node"] for w in st["workers"]} == {st["nodes"][0]["name"]}


def test_containers_are_hardened_and_the_key_never_shows(default_cluster: Up) -> None:
    client = docker.from_env()
    key = (default_cluster.state / "e2e-default" / "authkey").read_text().strip()
    containers = client.containers.list(filters=labels.cluster_filter("e2e-default"))
    assert len(containers) == 5
    for c in containers:
        c.reload()
        hc, cfg = c.attrs["HostConfig"], c.attrs["Config"]
        assert cfg["User"] and not cfg["User"].startswith("0"), cfg["User"]
        assert hc["ReadonlyRootfs"] and hc["CapDrop"] == ["ALL"] and hc["Init"]
        assert "no-new-privileges:true" in hc["SecurityOpt"]
        assert hc["Memory"] > 0 and hc["NanoCpus"] > 0 and hc["PidsLimit"] > 0
        assert not hc.get("PortBindings") and not c.attrs["NetworkSettings"]["Ports"]
        assert key not in json.dumps(c.attrs), "the authkey shows in docker inspect"
        assert key.encode() not in c.logs(), "the authkey shows in the logs"
        assert c.exec_run("id -u").output.strip() != b"0"
    image = client.images.get(containers[0].image.id)
    for layer in image.history():
        assert key not in json.dumps(layer)


def test_tutorial_worker_joined_by_hand_is_counted(default_cluster: Up) -> None:
    """The tutorial's own worker, in a container we did not start, on a cluster network:
    its results count, attributed to the container that owns its peer IP."""
    client = docker.from_env()
    status = json.loads(
        default_cluster.cli("status", "-f", str(default_cluster.file), "--json").stdout
    )
    key = (default_cluster.state / "e2e-default" / "authkey").read_text().strip()
    script = textwrap.dedent("""
        import queue
        from multiprocessing.managers import BaseManager
        class QueueManager(BaseManager):
            pass
        QueueManager.register('get_task_queue')
        QueueManager.register('get_result_queue')
        m = QueueManager(address=('e2e-default-master', 5000), authkey=open('/key','rb').read())
        m.connect()
        task = m.get_task_queue()
        result = m.get_result_queue()
        wait = 60  # until the job starts, then until the queue stays empty
        while True:
            try:
                n = task.get(timeout=wait)
            except queue.Empty:
                break
            wait = 3
            result.put('%d * %d = %d' % (n, n, n*n))
        print('worker exit.')
    """)
    keyfile = default_cluster.state / "hand-key"
    keyfile.write_text(key)
    keyfile.chmod(0o644)
    net = next(n["engine_name"] for n in status["networks"] if n["name"] == "net-a")
    name = f"e2e-hand-joined-{secrets.token_hex(3)}"
    hand = client.containers.create(
        status["images"]["worker"],
        entrypoint=["python3", "-c", script],
        name=name,
        labels={labels.TEST: "e2e"},
        network=net,
        user="10001:10001",
        read_only=True,
        volumes={str(keyfile): {"bind": "/key", "mode": "ro"}},
    )
    try:
        hand.start()
        res = default_cluster.cli(
            "job",
            "-f",
            str(default_cluster.file),
            "--protocol",
            "classic",
            "--kind",
            "square",
            "--tasks",
            "3000",
            "--json",
        )
        assert res.returncode == 0, res.stderr[-2000:]
        outcome = json.loads(res.stdout)
        rows = {r["worker"]: r["tasks"] for r in outcome["summary"]}
        assert rows.get(f"{name} (joined by hand)", 0) > 0, rows
        assert sum(rows.values()) == 3000
        assert outcome["report"]["guarantee"].startswith("at-most-once")
        hand.wait(timeout=60)
        assert b"worker exit." in hand.logs()
    finally:
        hand.remove(force=True)


def test_one_worker(one_worker: Up) -> None:
    outcome = _all_pass(one_worker)
    [row] = outcome["summary"]
    assert row["worker"] == "e2e-one-solo-0" and row["tasks"] == 3000


def test_three_networks(three_networks: Up) -> None:
    outcome = _all_pass(three_networks)
    assert _subnets_of(outcome) == {"red", "green", "blue"}
    assert outcome["report"]["job"]["kind"] == "io"


def test_worker_off_the_master_network_fails_up_with_exit_3(unreachable: Up) -> None:
    assert unreachable.code == 3, unreachable.stderr[-2000:]
    failed = {n: c for n, c in unreachable.checks().items() if not c["ok"]}
    assert list(failed) == ["workers_connected"]
    evidence = failed["workers_connected"]["evidence"]
    assert "never connected: e2e-cut-stranded-0" in evidence
    # known before waiting: named with the reason, and nobody waited the 15 s for it
    assert "never connected: e2e-cut-stranded-0: shares no network with the master" in evidence
    assert float(evidence.split(" after ")[1].split("s;")[0]) < 15, evidence
    assert "FAIL workers_connected" in unreachable.stderr
    assert unreachable.stderr.count("workers connected: ") <= 3  # once per change, not per poll
    assert (
        f"{unreachable.file}:17:15: warning: workers[1].networks: worker group 'stranded' "
        "shares no network with the master"
    ) in unreachable.stderr


def test_down_removes_exactly_the_labelled_objects_and_is_idempotent(one_worker: Up) -> None:
    client = docker.from_env()
    bystander = client.networks.create(
        "e2e-bystander", internal=True, labels={labels.CLUSTER: "e2e-one"}
    )  # not managed
    try:
        first = one_worker.cli("down", "-f", str(one_worker.file))
        # the master, the worker, the network and the master's journal volume
        assert first.returncode == 0 and "removed 4 objects" in first.stderr, first.stderr
        assert not client.containers.list(all=True, filters=labels.cluster_filter("e2e-one"))
        assert not client.networks.list(filters=labels.cluster_filter("e2e-one"))
        assert not client.volumes.list(filters=labels.cluster_filter("e2e-one"))
        client.networks.get(bystander.id)  # still there: it was not ours
        again = one_worker.cli("down", "-f", str(one_worker.file))
        assert again.returncode == 0 and "removed 0 objects" in again.stderr
    finally:
        bystander.remove()


def test_up_sweeps_the_leftovers_of_an_earlier_run(three_networks: Up) -> None:
    client = docker.from_env()
    before = {
        c.labels[labels.RUN]
        for c in client.containers.list(all=True, filters=labels.cluster_filter("e2e-three"))
    }
    res = three_networks.cli("up", "-f", str(three_networks.file), "--no-job")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "objects left by an earlier run" in res.stderr
    after = {
        c.labels[labels.RUN]
        for c in client.containers.list(all=True, filters=labels.cluster_filter("e2e-three"))
    }
    assert len(before) == len(after) == 1 and before != after


def test_isolation_check_fails_when_the_probe_can_reach_the_master(default_cluster: Up) -> None:
    """The same probe, run from a network the master IS on, gets through: the check fails."""
    from orchestrate.backends.base import ExecResult
    from orchestrate.checks import isolation

    client = docker.from_env()
    st = json.loads(default_cluster.cli("status", "-f", str(default_cluster.file), "--json").stdout)
    net = next(n["engine_name"] for n in st["networks"] if n["name"] == "net-a")
    target = f"{st['master']['addresses']['net-a']}:{st['master']['port']}"
    probe = client.containers.create(
        st["images"]["master"],
        ["probe", target],
        network=net,
        user="10001:10001",
        read_only=True,
        labels={labels.TEST: "e2e"},
    )
    try:
        probe.start()
        code = probe.wait(timeout=60)["StatusCode"]
        out = probe.logs().decode()
    finally:
        probe.remove(force=True)
    assert code == 0 and f"reachable {target}" in out
    assert not isolation(ExecResult(code, out, net))["ok"]


def test_an_interrupted_job_is_cancelled_on_the_master(default_cluster: Up) -> None:
    """SIGTERM (or Ctrl-C) on `orchestrate job` cancels the job, so the next one can run."""
    import signal
    import subprocess
    import sys
    import time

    from e2e_harness import REPO

    env = dict(os.environ, DISTPROC_STATE_DIR=str(default_cluster.state))
    args = [sys.executable, "-m", "orchestrate", "job", "-f", str(default_cluster.file)]
    job = subprocess.Popen(
        [*args, "--kind", "io", "--size", "500", "--tasks", "20000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
    )  # fmt: skip
    time.sleep(5)
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=60)
    assert job.returncode == 130 and "cancelling the job" in err, err[-2000:]
    res = default_cluster.cli("job", "-f", str(default_cluster.file), "--tasks", "200")
    assert res.returncode == 0, res.stderr[-2000:]


def test_a_worker_stopped_mid_job_hands_back_and_the_checks_still_pass(default_cluster: Up) -> None:
    """docker stop (SIGTERM) on a worker during a job: it releases what it has not started,
    finishes the rest and exits 0; the job completes and its results still count."""
    import subprocess
    import sys
    import time

    from e2e_harness import REPO

    client = docker.from_env()
    env = dict(os.environ, DISTPROC_STATE_DIR=str(default_cluster.state))
    job = subprocess.Popen(
        [sys.executable, "-m", "orchestrate", "job", "-f", str(default_cluster.file),
         "--kind", "io", "--size", "500", "--tasks", "3000", "--batch", "8", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
    )  # fmt: skip
    worker = client.containers.get("e2e-default-alpha-0")
    try:
        time.sleep(4)  # the job is under way: it takes about 12 s
        worker.stop(timeout=20)
        worker.reload()
        assert worker.attrs["State"]["ExitCode"] == 0
        out, err = job.communicate(timeout=300)
        assert job.returncode == 0, err[-3000:]
        outcome = json.loads(out)
        assert all(c["ok"] for c in outcome["checks"]), outcome["checks"]
        rows = {r["worker"]: r["tasks"] for r in outcome["summary"]}
        assert rows["e2e-default-alpha-0"] > 0 and sum(rows.values()) == 3000
        assert outcome["status"]["workers"][0]["state"] != "running"  # it did stop mid-job
        master_log = client.containers.get("e2e-default-master").logs().decode()
        assert "worker e2e-default-alpha-0/" in master_log and " left" in master_log
    finally:
        worker.start()  # the cluster is shared by the session: put the worker back
