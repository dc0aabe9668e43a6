"""``up`` fails fast and plainly, and a failed ``up`` leaves nothing behind (real engine).

Each test has a cluster of its own (``e2e-11-fast-*``) on subnets of its own.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import docker
from docker.types import IPAMConfig, IPAMPool
from e2e_harness import orchestrate

from orchestrate import labels

CLASH = "e2e-11-fast-clash"
HOLDER = "e2e-11-fast-holder"


def _file(tmp_path: Path, name: str, cpus: float = 0.5) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(f"""\
            name: {name}
            networks:
              - name: a
                subnet: 198.18.235.0/24
              - name: b
                subnet: 198.18.236.0/24
            master:
              networks: [a, b]
            workers:
              - name: w
                count: 1
                networks: [a]
                resources:
                  cpus: {cpus}
            job:
              kind: square
              tasks: 10
        """)
    )
    return path


def _labelled(client: docker.DockerClient, cluster: str) -> list[str]:
    flt = labels.cluster_filter(cluster)
    return [
        o.name
        for o in [
            *client.networks.list(filters=flt),
            *client.containers.list(all=True, filters=flt),
        ]
    ]


def test_cpus_the_engine_lacks_fail_at_the_field_and_nothing_is_created(
    engine: None, tmp_path: Path
) -> None:
    client = docker.from_env()
    name = "e2e-11-fast-cpu"
    res = orchestrate("up", "-f", str(_file(tmp_path, name, cpus=64)), state=tmp_path / "s")
    assert res.returncode == 2, res.stderr
    assert f"{name}.yaml:14:13: workers[0].resources.cpus: cpus 64 is more than the engine" in (
        res.stderr
    )
    assert "Client Error" not in res.stderr and "Traceback" not in res.stderr
    assert _labelled(client, name) == []


def test_a_subnet_clash_names_the_holder_and_the_failed_up_leaves_nothing(
    engine: None, tmp_path: Path
) -> None:
    """Network ``a`` is created, then ``b`` clashes with a network the test made first,
    labelled as another cluster's: the error names it, and ``a`` is rolled back."""
    client = docker.from_env()
    file = _file(tmp_path, CLASH)
    holder = client.networks.create(
        f"{HOLDER}-lan",
        internal=True,
        ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="198.18.236.0/24")]),
        labels={labels.MANAGED: "true", labels.CLUSTER: HOLDER, labels.TEST: "e2e"},
    )
    try:
        t0 = time.monotonic()
        res = orchestrate("up", "-f", str(file), state=tmp_path / "s", timeout=120)
        took = time.monotonic() - t0
        assert res.returncode == 1, res.stderr
        assert (
            f"orchestrate: could not create network {CLASH}-b: its subnet 198.18.236.0/24 "
            f"overlaps network '{HOLDER}-lan' (198.18.236.0/24) of cluster '{HOLDER}': "
            f"remove it (`orchestrate down --name {HOLDER}`) or pick another subnet"
        ) in res.stderr
        assert "Client Error" not in res.stderr and "Traceback" not in res.stderr
        assert f"network {CLASH}-a" in res.stderr  # it was created before the clash...
        assert _labelled(client, CLASH) == []  # ...and rolled back
        assert _labelled(client, HOLDER) == [f"{HOLDER}-lan"]  # the other cluster untouched
        assert took < 60, took

        again = orchestrate("up", "-f", str(file), "--verbose", state=tmp_path / "s")
        assert again.returncode == 1
        assert "objects left by an earlier run" not in again.stderr  # it starts clean
        assert "the engine said: 403 Client Error" in again.stderr  # the raw error, on demand
        assert "Pool overlaps with other one on this address space" in again.stderr
    finally:
        holder.remove()
        orchestrate("down", "--name", CLASH, state=tmp_path / "s")
    assert _labelled(client, CLASH) == []
