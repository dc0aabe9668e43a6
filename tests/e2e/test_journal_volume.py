"""The master's journal on a volume of the cluster's (tests/e2e/topologies/journal.yaml):
``down --keep-data`` keeps it and the next ``up``'s master replays it; ``down`` removes it;
``master.journal: false`` makes none and runs the master without one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker
import pytest
from e2e_harness import orchestrate

from orchestrate import labels
from orchestrate.backends.docker_local import DockerBackend

FILE = Path(__file__).parent / "topologies" / "journal.yaml"
CLUSTER = "e2e-journal"
VOLUME = f"{CLUSTER}-journal"


def _volumes() -> list[str]:
    flt = labels.cluster_filter(CLUSTER)
    return sorted(v.name for v in docker.from_env().volumes.list(filters=flt))


def _status() -> dict[str, Any]:
    res = DockerBackend().control(CLUSTER, ["status"])
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def _ok(res: Any) -> str:
    assert res.returncode == 0, res.stderr[-3000:]
    return str(res.stderr)


@pytest.fixture
def down_at_the_end(engine: None, state_dir: Path) -> Any:
    yield state_dir
    orchestrate("down", "-f", str(FILE), state=state_dir)
    assert _volumes() == []


def test_down_keep_data_keeps_the_journal_that_the_next_master_replays(
    down_at_the_end: Path,
) -> None:
    state = down_at_the_end
    _ok(orchestrate("up", "-f", str(FILE), state=state))  # runs the file's job
    assert _volumes() == [VOLUME]
    journal = _status()["journal"]
    assert journal["path"] == "/var/lib/distproc/journal.sqlite" and journal["commits"] > 0
    vol = docker.from_env().volumes.get(VOLUME)
    assert vol.attrs["Labels"][labels.ROLE] == labels.ROLE_JOURNAL

    err = _ok(orchestrate("down", "-f", str(FILE), "--keep-data", state=state))
    assert "its journal kept" in err
    assert _volumes() == [VOLUME]
    assert docker.from_env().containers.list(all=True, filters=labels.cluster_filter(CLUSTER)) == []

    err = _ok(orchestrate("up", "-f", str(FILE), "--no-job", state=state))
    assert "kept by `down --keep-data`: the master replays it" in err
    assert _status()["journal"]["replayed_jobs"] == 1  # the job the first up ran
    report = DockerBackend().control(CLUSTER, ["report"])
    assert report.exit_code == 0 and json.loads(report.stdout)["totals"]["ok"] == 3000

    _ok(orchestrate("down", "-f", str(FILE), state=state))
    assert _volumes() == []


def test_journal_false_runs_the_master_without_one(down_at_the_end: Path, tmp_path: Path) -> None:
    off = tmp_path / "journal-off.yaml"
    text = FILE.read_text()
    off.write_text(text.replace("master:\n", "master:\n  journal: false\n"))
    _ok(orchestrate("up", "-f", str(off), state=down_at_the_end))
    assert _volumes() == []
    assert _status()["journal"]["path"] is None
    master = docker.from_env().containers.get(f"{CLUSTER}-master")
    assert "--journal" not in master.attrs["Args"]
