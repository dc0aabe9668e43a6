"""Helpers for the end-to-end tests: run the CLI, bring clusters up and down (see conftest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "e2e-artifacts"


def orchestrate(*args: str, state: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, DISTPROC_STATE_DIR=str(state))
    return subprocess.run(
        [sys.executable, "-m", "orchestrate", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=timeout,
    )


@dataclass
class Up:
    """A cluster brought up by ``orchestrate up --json``, and what it printed."""

    name: str
    file: Path
    state: Path
    code: int
    stderr: str
    outcome: dict[str, Any] | None

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return orchestrate(*args, state=self.state, timeout=timeout)

    def checks(self) -> dict[str, dict[str, Any]]:
        assert self.outcome is not None, self.stderr
        return {c["name"]: c for c in self.outcome["checks"]}


def _save_logs(name: str) -> None:
    from orchestrate.backends.docker_local import DockerBackend

    DockerBackend().save_logs(name, ARTIFACTS / name)


def bring_up(request: pytest.FixtureRequest, file: Path, state: Path, *args: str) -> Iterator[Up]:
    """``up`` a cluster file; at teardown save logs if anything failed, then ``down``."""
    from orchestrate.model import load_cluster

    name = load_cluster(file).name
    failed_before = request.session.testsfailed
    res = orchestrate("up", "-f", str(file), "--json", *args, state=state)
    outcome = json.loads(res.stdout) if res.stdout.strip() else None
    up = Up(name, file, state, res.returncode, res.stderr, outcome)
    try:
        yield up
    finally:
        if request.session.testsfailed > failed_before or res.returncode not in (0, 3):
            _save_logs(name)
            (ARTIFACTS / name / "up.stderr").write_text(res.stderr)
            if outcome is not None:
                (ARTIFACTS / name / "outcome.json").write_text(json.dumps(outcome, indent=2))
        orchestrate("down", "-f", str(file), state=state)
