"""Each chaos scenario against real containers (tests/e2e/topologies/chaos.yaml): a job, the
fault injected while it runs, healed, and the verdict. Under the leased protocol nothing is
lost; under classic, a worker killed holding a task loses it, and the verdict exits 3. After
each one the cluster is as it was: the fault is undone, the containers keep their hardening,
no helper is left. What the kernel lacks (netem) is refused with exit 2, nothing run."""

from __future__ import annotations

import json
from typing import Any

import docker
import pytest
from e2e_harness import Up

from orchestrate import labels
from orchestrate.backends.docker_local import DockerBackend
from orchestrate.events import NullEvents

CLUSTER = "e2e-chaos"
BIG, SMALL = f"{CLUSTER}-big-0", f"{CLUSTER}-small-0"
RUN = 300  # seconds for one chaos run: a 12 s job, the fault, the report read again


def _chaos(up: Up, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    """``orchestrate chaos ARGS --json``: exit code, verdicts, stderr."""
    assert up.code == 0, up.stderr[-3000:]
    res = up.cli("chaos", "-f", str(up.file), *args, "--json", timeout=RUN)
    doc = json.loads(res.stdout) if res.stdout.strip() else {"verdicts": []}
    return res.returncode, doc["verdicts"], res.stderr


def _none_lost(v: dict[str, Any], err: str) -> None:
    t = v["tasks"]
    assert v["status"] == "pass", (v["reason"], err[-3000:])
    assert t["lost"] == 0 and t["ok"] == t["submitted"] > 0, t
    assert v["injected_at"] is not None and v["healed_at"] > v["injected_at"], v["steps"]
    assert v["recovery"]["baseline"] > 0, v["recovery"]
    own = {c["name"]: c for c in v["report"]["checks"]}
    assert own["every_id_accounted"]["status"] == "pass"  # duplicates never counted twice


def _worker(name: str) -> Any:
    return next(w for w in DockerBackend().inventory(CLUSTER).workers if w.name == name)


def _in_netns(name: str, script: str) -> str:
    faults = DockerBackend().faults(CLUSTER, "")
    res = faults.in_netns(_worker(name), ["sh", "-c", script], NullEvents())
    assert res.exit_code == 0, res.stderr
    return res.stdout


@pytest.fixture(autouse=True)
def _left_as_it_was(chaos_cluster: Up) -> Any:
    """After each scenario: the two workers run, hardened, and no helper is left."""
    yield
    client = docker.from_env()
    mine = client.containers.list(all=True, filters=labels.cluster_filter(CLUSTER))
    assert sorted(c.name for c in mine) == sorted([f"{CLUSTER}-master", BIG, SMALL])
    for c in mine:
        c.reload()
        host = c.attrs["HostConfig"]
        assert c.status == "running" and not c.attrs["State"]["Paused"], c.name
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"] and host["ReadonlyRootfs"]
        assert not host["Privileged"]


def test_kill_worker_loses_nothing_under_leased_and_a_task_under_classic(chaos_cluster: Up) -> None:
    """The file's chaos: list, one table: the same kill, leased then classic."""
    code, (leased, classic), err = _chaos(chaos_cluster)
    _none_lost(leased, err)
    assert "killed e2e-chaos-big-0 (SIGKILL) holding" in leased["steps"][0]
    assert leased["recovery"]["seconds"] is not None, leased["recovery"]  # it came back
    assert leased["report"]["totals"]["expired_leases"] > 0  # its leases expired, re-run
    assert code == 3, err[-3000:]
    assert classic["status"] == "fail" and classic["protocol"] == "classic"
    assert "holding 1 task" in classic["steps"][0], classic["steps"]
    assert classic["tasks"]["lost"] >= 1 and classic["report"]["totals"]["lost"] >= 1
    assert classic["tasks"]["ok"] + classic["tasks"]["lost"] == classic["tasks"]["submitted"]
    assert "lost" in classic["reason"]
    assert "FAIL kill-worker (classic)" in err and "PASS kill-worker (leased)" in err


def test_pause_worker_past_the_lease_turns_late_results_into_duplicates(chaos_cluster: Up) -> None:
    """The small worker frozen holding its tasks, past the lease, until the big one has
    finished the job (its expired tasks too; the fault is healed when the job ends): thawed,
    its results come late, duplicates."""
    code, [v], err = _chaos(
        chaos_cluster, "pause-worker", "--target", "small-0", "--tasks", "3000", "--for", "20"
    )
    assert code == 0, err[-3000:]
    _none_lost(v, err)
    assert "froze e2e-chaos-small-0 holding" in v["steps"][0]
    assert v["tasks"]["duplicates"] > 0, v["steps"]


def test_partition_loses_nothing_and_the_worker_comes_back_at_its_address(
    chaos_cluster: Up,
) -> None:
    before = _worker(BIG).addresses
    code, [v], err = _chaos(chaos_cluster, "partition")
    assert code == 0, err[-3000:]
    _none_lost(v, err)
    assert v["steps"][0].endswith(f"disconnected {BIG} from net ({before['net']})")
    assert _worker(BIG).addresses == before


def test_blackhole_loses_nothing_and_leaves_no_rule(chaos_cluster: Up) -> None:
    code, [v], err = _chaos(chaos_cluster, "blackhole")
    assert code == 0, err[-3000:]
    _none_lost(v, err)
    assert v["recovery"]["dipped"], v["recovery"]  # four fifths of the work stopped
    assert "distproc-chaos" not in _in_netns(BIG, "iptables -S")


def test_slow_link_loses_nothing_and_lifts_its_limit(chaos_cluster: Up) -> None:
    code, [v], err = _chaos(chaos_cluster, "slow-link", "--rate", "16kbit")
    assert code == 0, err[-3000:]
    _none_lost(v, err)
    assert "to 16kbit (tbf on " in v["steps"][0]
    assert v["recovery"]["lowest"] < 0.8 * v["recovery"]["baseline"], v["recovery"]  # it bit
    assert "tbf" not in _in_netns(BIG, "tc qdisc show")


def test_scale_adds_a_worker_that_takes_a_share_then_removes_it(chaos_cluster: Up) -> None:
    code, [v], err = _chaos(chaos_cluster, "scale", "--target", "small", "--for", "4")
    assert code == 0, err[-3000:]
    _none_lost(v, err)
    added = f"{CLUSTER}-small-1"
    assert v["steps"][0].endswith(f"added {added} to group small")
    shares = next(c for c in v["checks"] if c["name"] == "every_worker_contributed")
    assert shares["status"] == "pass" and added in shares["evidence"], shares


def test_what_the_kernel_lacks_is_refused_with_nothing_run(chaos_cluster: Up) -> None:
    """This kernel has no sch_netem: slow-link's --delay is refused (exit 2), as the probe
    in a throwaway namespace found it, before any job."""
    before = chaos_cluster.cli("status", "-f", str(chaos_cluster.file), "--json")
    res = chaos_cluster.cli("chaos", "-f", str(chaos_cluster.file), "slow-link", "--delay", "50")
    assert res.returncode == 2, res.stderr[-3000:]
    assert "slow-link's delay needs netem, which this kernel lacks" in res.stderr
    assert "Specified qdisc kind is unknown" in res.stderr and "nothing was changed" in res.stderr
    assert "running the job" not in res.stderr
    after = chaos_cluster.cli("status", "-f", str(chaos_cluster.file), "--json")
    assert json.loads(after.stdout)["workers"] == json.loads(before.stdout)["workers"]


def test_restart_master_resumes_the_job_from_its_journal(chaos_cluster: Up) -> None:
    """The master killed mid-job and started again: it replays its journal, the job's own
    command follows the same job, nothing is lost; under classic, what workers held dies."""
    code, [v], err = _chaos(chaos_cluster, "restart-master", "--at", "3")
    assert code == 0, err[-3000:]
    _none_lost(v, err)
    assert v["steps"][0].endswith(f"killed the master {CLUSTER}-master (SIGKILL)"), v["steps"]
    assert f"started the master {CLUSTER}-master again" in v["steps"][1]
    said = [line for line in err.splitlines() if "master restarted at " in line]
    assert said and f"resumed job {v['report']['job']['id']} from the journal: " in said[0], err
    assert v["report"]["totals"]["tasks"] == v["tasks"]["submitted"] == 9000


def _master() -> Any:
    return docker.from_env().containers.get(f"{CLUSTER}-master")


def test_a_master_that_crashes_comes_back_and_orchestrate_job_follows_it(chaos_cluster: Up) -> None:
    """Not a chaos scenario: the master's process dies on its own (its init SIGKILLed from
    the host, as the OOM killer would), the engine's restart policy starts it again, and
    ``orchestrate job`` goes on with the same job to its real verdict."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from e2e_harness import REPO

    env = dict(os.environ, DISTPROC_STATE_DIR=str(chaos_cluster.state))
    job = subprocess.Popen(
        [sys.executable, "-m", "orchestrate", "job", "-f", str(chaos_cluster.file),
         "--tasks", "6000", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
    )  # fmt: skip
    restarts = _master().attrs["RestartCount"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the job is well under way
        res = DockerBackend().control(CLUSTER, ["status"])
        status = json.loads(res.stdout) if res.exit_code == 0 else {}
        running = status.get("job") or {"finished": True}  # the last test's job has ended
        if not running["finished"] and running["done"] > 1500:
            break
        time.sleep(0.2)
    master = _master()
    mounts = {m["Destination"]: m for m in master.attrs["Mounts"]}
    assert mounts["/var/lib/distproc"]["Name"] == f"{CLUSTER}-journal"
    os.kill(master.attrs["State"]["Pid"], signal.SIGKILL)
    out, err = job.communicate(timeout=RUN)
    assert job.returncode == 0, err[-3000:]
    assert _master().attrs["RestartCount"] == restarts + 1  # the engine, not us
    doc = json.loads(out)
    [said] = doc["restarts"]
    assert said.startswith("master restarted at ") and "from the journal: " in said, err
    t = doc["report"]["totals"]
    assert (t["tasks"], t["ok"], t["lost"]) == (6000, 6000, 0), t
    assert all(c["ok"] for c in doc["checks"]), doc["checks"]
