"""Many machines for real: a 3-machine test bed, ``orchestrate up -f examples/swarm.yaml`` on it
(the swarm formed and provisioned over ssh, images shipped by id, services on three nodes),
every check including ``results_crossed_machines``, a machine killed mid-job with nothing
lost, the encrypted-overlay refusal on this kernel (no IPsec ESP), and ``down`` leaving
nothing of the cluster on any node.

The tests run in this file's order on one test bed and one cluster (module fixtures). Run
under ``flock /tmp/distproc-engine.lock``: the test bed's names and subnet are fixed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
from e2e_harness import ARTIFACTS, REPO, orchestrate

from orchestrate import labels, remote
from orchestrate.model import load_cluster

pytestmark = pytest.mark.swarm

HOSTS = 3
LOST_JOB_TASKS = 3000
NAME = "e2e-swarm"


@dataclass
class Swarm:
    state: Path
    file: Path
    up: subprocess.CompletedProcess
    outcome: dict[str, Any] | None

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return orchestrate(*args, state=self.state, timeout=timeout)

    def engines(self) -> dict[str, docker.DockerClient]:
        """Every machine's own engine, over ssh with the test bed's keys."""
        return {h.name: remote.engine(h) for h in load_cluster(self.file).hosts}


def _swarm_file(directory: Path, state: Path, **changes: str) -> Path:
    """examples/swarm.yaml as written, on the test bed this test made (its hosts file lives in
    the state directory), under another name; ``changes`` replace text in it."""
    text = (REPO / "examples" / "swarm.yaml").read_text()
    text = text.replace("file: ../.cluster/testbed/hosts.yaml", f"file: {state}/testbed/hosts.yaml")
    text = text.replace("name: distproc-swarm", f"name: {NAME}")
    for old, new in changes.items():
        assert old in text, old
        text = text.replace(old, new)
    path = directory / "swarm.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def swarm(
    engine: None, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Swarm]:
    state = tmp_path_factory.mktemp("swarm-state")
    bed = orchestrate("testbed", "up", "--hosts", str(HOSTS), state=state, timeout=900)
    assert bed.returncode == 0, bed.stderr
    file = _swarm_file(tmp_path_factory.mktemp("swarm"), state)
    failed_before = request.session.testsfailed
    res = orchestrate("up", "-f", str(file), "--json", state=state, timeout=900)
    outcome = json.loads(res.stdout) if res.stdout.strip() else None
    up = Swarm(state, file, res, outcome)
    try:
        yield up
    finally:
        if request.session.testsfailed > failed_before or res.returncode != 0:
            out = ARTIFACTS / NAME
            out.mkdir(parents=True, exist_ok=True)
            (out / "up.stderr").write_text(res.stderr)
            orchestrate("testbed", "up", "--hosts", str(HOSTS), state=state, timeout=300)
            with_logs = orchestrate("logs", "-f", str(file), state=state, timeout=300)
            (out / "logs.txt").write_text(with_logs.stdout + with_logs.stderr)
        orchestrate("down", "-f", str(file), state=state, timeout=600)
        orchestrate("testbed", "down", state=state, timeout=600)


def _checks(outcome: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    assert outcome is not None
    return {c["name"]: c for c in outcome["checks"]}


def test_up_on_three_machines_passes_every_check(swarm: Swarm) -> None:
    assert swarm.up.returncode == 0, swarm.up.stderr[-4000:]
    checks = _checks(swarm.outcome)
    assert {c["status"] for c in checks.values()} == {"pass"}, checks
    crossed = checks["results_crossed_machines"]["evidence"]
    assert "400/400 results from 2 other machines than the master's (tb-1)" in crossed
    status = json.loads(swarm.cli("status", "-f", str(swarm.file), "--json").stdout)
    assert status["backend"] == "swarm"
    assert [(n["name"], n["state"]) for n in status["nodes"]] == [
        ("tb-1", "ready"), ("tb-2", "ready"), ("tb-3", "ready"),
    ]  # fmt: skip
    assert status["master"]["node"] == "tb-1"
    assert {w["node"] for w in status["workers"]} <= {"tb-2", "tb-3"}


def test_a_second_provision_changes_nothing(swarm: Swarm) -> None:
    res = swarm.cli("hosts", "provision", "-f", str(swarm.file))
    assert res.returncode == 0 and "nothing to change" in res.stderr, res.stderr


def test_the_key_is_a_secret_nobody_can_read(swarm: Swarm) -> None:
    key = (swarm.state / NAME / "authkey").read_bytes().strip().decode()
    manager = swarm.engines()["tb-1"]
    flt = labels.cluster_filter(NAME)
    secrets = manager.api.secrets(filters=flt)
    assert len(secrets) == 1 and "Data" not in secrets[0]["Spec"]
    for service in manager.api.services(filters=flt):
        assert key not in json.dumps(service)  # not in an env var, a command, a label
    for client in swarm.engines().values():
        for c in client.api.containers(filters=flt):
            assert key not in json.dumps(client.api.inspect_container(c["Id"]))


def test_encrypted_overlays_are_refused_without_esp(swarm: Swarm, tmp_path: Path) -> None:
    """This kernel has no IPsec ESP: an encrypted overlay would drop every packet."""
    file = _swarm_file(
        tmp_path, swarm.state,
        **{f"name: {NAME}": "name: e2e-swarm-enc", "encrypted: false\n  - name: net-b":
           "encrypted: true\n  - name: net-b", "198.18.72.0/24": "198.18.74.0/24",
           "198.18.73.0/24": "198.18.75.0/24"},
    )  # fmt: skip
    res = swarm.cli("up", "-f", str(file), timeout=600)
    assert res.returncode == 1, res.stderr
    assert "encrypted: true needs IPsec ESP" in res.stderr and "net-a" in res.stderr
    for name, client in swarm.engines().items():
        flt = labels.cluster_filter("e2e-swarm-enc")
        assert not client.api.networks(filters=flt), name
        if name == "tb-1":
            assert not client.api.services(filters=flt) and not client.api.secrets(filters=flt)


def test_chaos_kills_and_freezes_a_worker_on_its_node_and_refuses_the_rest(swarm: Swarm) -> None:
    """kill-worker (SIGKILL by the worker's node's engine, and Swarm's new task in its slot),
    pause-worker and restart-master (the master's new task on its node finds its journal
    volume there) on the swarm: nothing lost. What the swarm backend does not do (taking
    a task off an overlay) is refused with the reason, exit 2, no job run."""
    job = ["--kind", "io", "--size", "50", "--tasks", "20000", "--lease-seconds", "2"]
    done = {}
    for scenario in ("kill-worker", "pause-worker", "restart-master"):
        res = swarm.cli("chaos", "-f", str(swarm.file), scenario, *job, "--json", timeout=600)
        assert res.returncode == 0, res.stderr[-4000:]
        [v] = json.loads(res.stdout)["verdicts"]
        done[scenario] = v
        assert v["status"] == "pass" and v["tasks"]["lost"] == 0, (v["reason"], v["steps"])
        assert v["tasks"]["ok"] == 20000 and v["healed_at"] > v["injected_at"] > 0
        print(f"swarm {scenario}: {v['steps']}; recovery {v['recovery']['note']}")
        assert v["recovery"]["lowest"] is None or v["recovery"]["lowest"] >= 0, v["recovery"]
    assert "s killed e2e-swarm-alpha-1 (SIGKILL) holding" in done["kill-worker"]["steps"][0]
    assert "s froze e2e-swarm-alpha-1 holding" in done["pause-worker"]["steps"][0]
    # the master's new task ran on the same node, with its journal: the job went on
    assert done["restart-master"]["steps"][0].endswith(
        "killed the master e2e-swarm-master (SIGKILL)"
    )
    master_node = swarm.engines()["tb-1"]
    [volume] = master_node.api.volumes(filters=labels.cluster_filter(NAME))["Volumes"]
    assert volume["Name"] == f"{NAME}-journal", volume
    res = swarm.cli("chaos", "-f", str(swarm.file), "partition")
    assert res.returncode == 2, res.stderr[-3000:]
    assert "partition is not supported on the swarm backend" in res.stderr
    assert "cannot be disconnected from an overlay network" in res.stderr
    assert "running the job" not in res.stderr


def test_a_machine_lost_mid_job_loses_no_task(swarm: Swarm) -> None:
    """SIGKILL a worker machine (its test bed container) while a job runs: Swarm reschedules
    its tasks on the machine left, the leases they held expire, and the job ends with every
    task ok and none lost. The times are printed (-s) for the README."""
    job = subprocess.Popen(
        [sys.executable, "-m", "orchestrate", "job", "-f", str(swarm.file), "--tasks",
         str(LOST_JOB_TASKS), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "DISTPROC_STATE_DIR": str(swarm.state)},
    )  # fmt: skip
    started = time.monotonic()
    try:
        _until_some_done(job)
        docker.from_env().containers.get("tb-3").kill()
        killed = time.monotonic()
        back = _until_rescheduled(swarm, "tb-3", timeout=180)
        out, err = job.communicate(timeout=600)
    finally:
        if job.poll() is None:
            job.kill()
    ended = time.monotonic()
    print(
        f"machine lost: killed at {killed - started:.1f}s into the job; its tasks ran again "
        f"on the machine left {back - killed:.1f}s after; the job ended {ended - killed:.1f}s "
        "after"
    )
    outcome = json.loads(out)
    totals = outcome["report"]["totals"]
    assert (totals["ok"], totals["lost"], totals["dead"]) == (LOST_JOB_TASKS, 0, 0), err[-3000:]
    checks = _checks(outcome)
    assert checks["tasks_answered_once"]["status"] == "pass"
    assert checks["results_crossed_machines"]["status"] == "pass", checks
    status = json.loads(swarm.cli("status", "-f", str(swarm.file), "--json").stdout)
    running = {w["node"] for w in status["workers"] if w["state"] == "running"}
    assert running == {"tb-2"}, status["workers"]  # every slot moved to the machine left


def _until_some_done(job: subprocess.Popen, timeout: float = 120) -> None:
    """Until the job's progress says a tenth is done (its plain progress lines on stderr)."""
    assert job.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = job.stderr.readline()
        if not line:
            raise AssertionError("the job ended before any progress")
        if "tasks done:" in line:
            done = int(line.split("tasks done:")[1].split("/")[0])
            if done >= LOST_JOB_TASKS // 10:
                return
    raise AssertionError("no progress within the time")


def _until_rescheduled(swarm: Swarm, lost: str, timeout: float) -> float:
    """When every worker slot runs again, none on the ``lost`` machine (Swarm noticed the
    node down and placed its tasks elsewhere); bounded."""
    from orchestrate.backends.swarm import SwarmBackend

    backend = SwarmBackend.for_cluster(load_cluster(swarm.file))
    expected = set(backend.worker_names(load_cluster(swarm.file)))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inv = backend.inventory(NAME)
        running = {w.name for w in inv.workers if w.state == "running" and w.node != lost}
        if running >= expected:
            return time.monotonic()
        time.sleep(1)
    raise AssertionError(f"the worker slots did not run again within {timeout:.0f}s")


def test_down_leaves_nothing_on_any_machine(swarm: Swarm) -> None:
    """With the lost machine back (its engine kept the dead task's container), ``down``
    removes every service, network, secret and container of the cluster from every node."""
    bed = swarm.cli("testbed", "up", "--hosts", str(HOSTS), timeout=300)
    assert bed.returncode == 0, bed.stderr
    res = swarm.cli("down", "-f", str(swarm.file))
    assert res.returncode == 0, res.stderr
    flt = labels.cluster_filter(NAME)
    for name, client in swarm.engines().items():
        left = [c["Names"][0] for c in client.api.containers(all=True, filters=flt)]
        left += [n["Name"] for n in client.api.networks(filters=flt)]
        left += [v["Name"] for v in client.api.volumes(filters=flt)["Volumes"] or []]
        if name == "tb-1":
            left += [s["Spec"]["Name"] for s in client.api.services(filters=flt)]
            left += [s["Spec"]["Name"] for s in client.api.secrets(filters=flt)]
        assert not left, f"{name} still has {left}"


def test_hosts_leave_undoes_provision(swarm: Swarm) -> None:
    """Every machine leaves the swarm (workers first); a second leave has nothing to do."""
    res = swarm.cli("hosts", "leave", "-f", str(swarm.file))
    assert res.returncode == 0 and "3 hosts left the swarm" in res.stderr, res.stderr
    for name, client in swarm.engines().items():
        assert client.info()["Swarm"]["LocalNodeState"] == "inactive", name
    again = swarm.cli("hosts", "leave", "-f", str(swarm.file))
    assert again.returncode == 0 and "0 hosts left the swarm" in again.stderr, again.stderr


def test_testbed_down_leaves_nothing_labelled(swarm: Swarm) -> None:
    res = swarm.cli("testbed", "down", timeout=600)
    assert res.returncode == 0, res.stderr
    client = docker.from_env()
    flt = labels.testbed_filter()
    left = [c.name for c in client.containers.list(all=True, filters=flt)]
    left += [v.name for v in client.volumes.list(filters=flt)]
    left += [n.name for n in client.networks.list(filters=flt)]
    assert not left, left
