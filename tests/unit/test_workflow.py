"""The GitHub Actions workflow is valid against the GitHub workflow schema."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "e2e.yml"


def _check(path: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("check-jsonschema is not installed (make test: pip install -e '.[test]')")
    # the schema is bundled with check-jsonschema: no network needed
    return subprocess.run(
        [exe, "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_workflow_matches_the_schema() -> None:
    res = _check(WORKFLOW)
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_broken_workflow_is_caught(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-latest", "runs_on: x"))
    res = _check(broken)
    assert res.returncode != 0 and "runs-on" in res.stdout + res.stderr


def test_workflow_runs_make_test_with_a_timeout_and_uploads_on_failure() -> None:
    text = WORKFLOW.read_text()
    assert "make test" in text and "timeout-minutes:" in text
    assert "if: failure()" in text and "actions/upload-artifact" in text
