"""The ``validate`` and ``schema`` commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrate.cli import main
from orchestrate.model import cluster_json_schema_text

ROOT = Path(__file__).resolve().parents[2]
BAD = Path(__file__).parent / "fixtures" / "config" / "multiple_problems.yaml"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "orchestrate", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_validate_bad_file_exits_2_without_traceback() -> None:
    result = _run("validate", "-f", str(BAD))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 6 and all(line.startswith(f"{BAD}:") for line in lines)


def test_validate_default_exits_0() -> None:
    result = _run("validate")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == (
        "cluster.yaml: ok — cluster 'distproc': 2 networks, 1 master, 4 workers in 2 groups"
    )


def test_validate_json(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["validate", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["workers"][0]["resources"]["memory"] == 192 << 20


def test_validate_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["validate", "-f", str(tmp_path / "x.yaml")]) == 2
    assert "x.yaml: file not found" in capsys.readouterr().err


def test_usage_error_exits_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["validate", "--bogus"])
    assert info.value.code == 2


def test_schema_prints_and_writes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == cluster_json_schema_text()
    target = tmp_path / "s.json"
    assert main(["schema", "-o", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == cluster_json_schema_text()
    assert main(["schema", "--check", "-o", str(target)]) == 0
    target.write_text("{}", encoding="utf-8")
    assert main(["schema", "--check", "-o", str(target)]) == 3


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--tasks", "-5"], "--tasks: Input should be greater than or equal to 0"),
        (["--kind", "bad kind"], "--kind: kind 'bad kind' must be one of"),
        (["--protocol", "classic", "--kind", "cpu"], "only supports kind 'square'"),
        (["--attach=-x"], "--attach: '-x' is not a job id"),
        (["--attach="], "--attach: '' is not a job id"),
        (["--attach", "7f3a0c1e-3" * 1000], "is not a job id"),
    ],
)
def test_bad_job_options_exit_2_before_touching_the_engine(args: list[str], fragment: str) -> None:
    result = _run("job", *args)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "1e12", "soon"])
@pytest.mark.parametrize("flag", [("job", "--job-timeout"), ("up", "--ready-timeout")])
def test_a_time_out_that_is_not_a_finite_positive_number_is_refused_at_its_flag(
    capsys: pytest.CaptureFixture[str], flag: tuple[str, str], value: str
) -> None:
    """Refused by the flag's type (exit 2, before any engine is asked): a NaN time-out was
    passed on to the master, which refused it only after the job had been prepared."""
    command, name = flag
    with pytest.raises(SystemExit) as exc:
        main([command, "-f", "cluster.yaml", name, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {name}: " in err and value in err
