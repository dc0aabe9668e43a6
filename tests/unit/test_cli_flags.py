"""One meaning per flag: ``-f/--file`` is the cluster file for every command, before the
command too (as ``docker compose -f x.yaml ps``); following logs is ``--follow``/``-F``. The
old habit (``logs alpha-0 -f``, from ``docker logs -f``) gets a hint, not a bare usage line."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrate import cli

FILE_COMMANDS = ["validate", "up", "down", "status", "logs", "job", "check", "graph"]


@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_every_command_takes_the_file_after_it(command: str) -> None:
    assert cli.build_parser().parse_args([command, "-f", "x.yaml"]).file == "x.yaml"
    assert cli.build_parser().parse_args([command, "--file", "x.yaml"]).file == "x.yaml"


@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_every_command_takes_the_file_before_it(command: str) -> None:
    assert cli.build_parser().parse_args(["-f", "x.yaml", command]).file == "x.yaml"
    assert cli.build_parser().parse_args(["--file", "x.yaml", command]).file == "x.yaml"


@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_the_file_defaults_to_cluster_yaml_and_after_the_command_wins(command: str) -> None:
    assert cli.build_parser().parse_args([command]).file == cli.DEFAULT_CONFIG
    args = cli.build_parser().parse_args(["-f", "a.yaml", command, "-f", "b.yaml"])
    assert args.file == "b.yaml"


def test_the_file_option_has_one_definition() -> None:
    """The same flags, help and metavar before the command and after every one of them."""
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices

    def file_action(p: object) -> tuple[object, ...]:
        a = next(a for a in p._actions if a.dest == "file")  # type: ignore[attr-defined]
        return (tuple(a.option_strings), a.help, a.metavar)

    assert {file_action(subparsers[c]) for c in FILE_COMMANDS} == {file_action(parser)}


def test_logs_f_is_the_file_and_follow_is_capital_f() -> None:
    args = cli.build_parser().parse_args(["logs", "-f", "x.yaml", "alpha-0"])
    assert (args.file, args.container, args.follow) == ("x.yaml", "alpha-0", False)
    for flag in ("-F", "--follow"):
        args = cli.build_parser().parse_args(["logs", "alpha-0", flag])
        assert (args.file, args.container, args.follow) == (cli.DEFAULT_CONFIG, "alpha-0", True)


def test_logs_with_f_last_says_f_is_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(["logs", "alpha-0", "-f"])
    assert exit_info.value.code == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "-f is the cluster file; use --follow (-F) to follow" in err, err


def test_f_without_its_file_elsewhere_names_what_it_wants(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["status", "-f"])
    assert "the cluster file, e.g. `-f cluster.yaml`" in capsys.readouterr().err


def test_logs_f_container_the_docker_habit_gets_the_hint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``logs -f alpha-0``: argparse took alpha-0 for the file; no such file, no container,
    so the user meant follow: say so, exit 2, before touching any engine."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(["logs", "-f", "alpha-0"]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "alpha-0: no such cluster file" in err
    assert "-f is the cluster file; use --follow (-F) to follow: `logs -F alpha-0`" in err


def test_follow_without_a_container_names_the_new_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["logs", "--follow"]) == cli.EXIT_CONFIG
    assert "`logs -F alpha-0`" in capsys.readouterr().err
