"""What a newcomer meets first: a plain line instead of a traceback, and nothing half done."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrate.cli import EXIT_CONFIG, EXIT_RUNTIME, main

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_python_m_orchestrate_without_the_dependencies_says_what_to_do() -> None:
    """`python3 -m orchestrate` in a clone, outside .venv: one line, exit 2, no traceback.

    ``-S`` leaves site-packages (rich, pydantic, docker) out, as the system Python of a fresh
    machine would; the clone's own ``orchestrate`` package is still found from the cwd."""
    res = subprocess.run(
        [sys.executable, "-S", "-m", "orchestrate", "status"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == EXIT_CONFIG, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.splitlines()) == 1, res.stderr
    assert "make cluster-up" in res.stderr and ".venv/bin/activate" in res.stderr
    assert res.stdout == ""


def test_graph_svg_without_graphviz_says_so_first_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no `dot` on it
    target = tmp_path / "topo.svg"
    code = main(["graph", "-f", str(REPO_ROOT / "cluster.yaml"), "--svg", str(target)])
    out, err = capsys.readouterr()
    assert code == EXIT_RUNTIME
    assert out == "" and not target.exists()
    assert len(err.splitlines()) == 1 and "Graphviz" in err and "apt-get install graphviz" in err


def test_graph_without_svg_needs_no_graphviz(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["graph", "-f", str(REPO_ROOT / "cluster.yaml")]) == 0
    assert capsys.readouterr().out.startswith("flowchart LR")
