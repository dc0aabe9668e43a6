"""Every command the README shows names a real Make target, subcommand and flag.

A newcomer types the README literally. So its shell commands (```sh blocks, and inline
`make ...`, `orchestrate ...`, `python -m distproc ...` spans) are extracted and checked
against the real definitions: the Makefile's targets and variables, ``orchestrate``'s and
``python -m distproc``'s own argument parsers, and pyproject's extras. The YAML example must
be ``cluster.yaml`` itself (``make readme`` copies it in).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
from distproc.cli import build_parser as distproc_parser

from orchestrate.cli import build_parser as orchestrate_parser

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
sys.path.insert(0, str(REPO_ROOT / "tools"))
import sync_readme  # noqa: E402

# Commands the README may show that are not ours: checked only for being one of these.
SYSTEM_TOOLS = {
    *("echo", "chmod", "stat", "wait", "kill", "cd", ".", "source"),
    *("systemctl", "dockerd", "apt-get"),
}
OPERATORS = {"&&", "||", ";", "|", "&"}
REDIRECTS = {">", ">>", "<", "2>"}
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def _words(line: str) -> list[str]:
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    return list(lex)


def substitutions(line: str) -> tuple[str, list[str]]:
    """The line with each ``$(...)`` replaced by a word, and the commands they held."""
    inner: list[str] = []
    while (start := line.find("$(")) != -1:
        depth, end = 0, start + 1
        for end in range(start + 1, len(line)):
            depth += {"(": 1, ")": -1}.get(line[end], 0)
            if depth == 0:
                break
        inner.append(line[start + 2 : end])
        line = f"{line[:start]}SUBSTITUTED{line[end + 1 :]}"
    return line, inner


def simple_commands(line: str) -> list[list[str]]:
    """A shell line cut at ``&&``, ``;``, ``|``, ``&``, without its redirections; the
    commands inside ``$(...)`` count too."""
    line, inner = substitutions(line)
    commands: list[list[str]] = [c for sub in inner for c in simple_commands(sub)]
    commands.append([])
    words = iter(_words(line))
    for word in words:
        if word in OPERATORS:
            commands.append([])
        elif word in REDIRECTS:
            next(words, None)
        else:
            commands[-1].append(word)
    return [c for c in commands if c]


def sh_lines(text: str) -> list[str]:
    """Every line of the ```sh blocks (continuations joined)."""
    lines = []
    for lang, body in FENCE.findall(text):
        if lang in ("sh", "bash", "shell"):
            lines += [ln for ln in body.replace("\\\n", " ").splitlines() if ln.strip()]
    return lines


def inline_commands(text: str) -> list[str]:
    """Inline code spans outside the fences that are commands of ours (a span may wrap)."""
    found = []
    for span in re.findall(r"`([^`\n]+(?:\n[^`\n]+)?)`", FENCE.sub("", text)):
        span = " ".join(span.split())
        words = span.split()
        while words and ASSIGNMENT.match(words[0]):
            words = words[1:]
        if len(words) < 2:
            continue  # a bare name (`orchestrate`) in prose is not a command line
        tool = Path(words[0]).name
        if words[-2] == "-m":
            continue  # a bare module (`python -m orchestrate`) is a name, too
        python_m = tool.startswith("python") and "-m" in words
        ours = tool in ("make", "orchestrate", "pip") or python_m
        if ours or (tool == "docker" and "distproc" in words):
            found.append(span)
    return found


@cache
def makefile() -> tuple[dict[str, list[str]], set[str]]:
    """The Makefile's targets with their recipe lines, and its variables."""
    targets: dict[str, list[str]] = {}
    variables: set[str] = set()
    current: list[str] = []
    for line in (REPO_ROOT / "Makefile").read_text().splitlines():
        if line.startswith("\t"):
            current.append(line.strip())
        elif m := re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*[?:+]?=", line):
            variables.add(m.group(1))
        elif m := re.match(r"^([^\s:#=][^:=]*):(?!=)", line):
            current = []
            for name in m.group(1).split():
                if not name.startswith("."):
                    targets[name] = current
    return targets, variables


def parse_error(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """argparse's complaint about ``argv``, or None when it parses."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code:
            return err.getvalue().strip().splitlines()[-1]
    return None


def _check_make(words: list[str]) -> str | None:
    targets, variables = makefile()
    values = {}
    for w in words:
        if ASSIGNMENT.match(w):
            name, _, value = w.partition("=")
            if name not in variables:
                return f"make has no variable {name}"
            values[name] = value
    goals = [w for w in words if not ASSIGNMENT.match(w) and not w.startswith("-")]
    for goal in goals:
        if goal not in targets:
            return f"make has no target {goal!r}"
        for recipe in targets[goal]:
            _, orchestrate, rest = recipe.partition("$(BIN)/orchestrate ")
            if not orchestrate:
                continue
            rest = rest.replace("$(FILE)", values.get("FILE", "cluster.yaml"))
            rest = rest.replace("$(HOSTS)", values.get("HOSTS", "3"))
            argv = [w for w in shlex.split(rest) if w != "$(ARGS)"]
            argv += shlex.split(values.get("ARGS", ""))
            if error := parse_error(orchestrate_parser(), argv):
                return f"make {goal}: orchestrate {' '.join(argv)}: {error}"
    return None


def _check_pip(words: list[str]) -> str | None:
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for w in words:
        for group in re.findall(r"^\.\[([^\]]+)\]$", w):
            missing = [e for e in group.split(",") if e not in extras]
            if missing:
                return f"pyproject.toml has no extra {missing}"
    return None


def check_command(words: list[str]) -> str | None:
    """Why this command line would not work as written, or None."""
    env = {}
    while words and ASSIGNMENT.match(words[0]):
        name, _, value = words[0].partition("=")
        env[name] = value
        words = words[1:]
    if words[:1] == ["sudo"]:
        words = words[1:]
    if not words:
        return None  # only assignments: `KEY=$PWD/...`
    tool, args = (words[0] if words[0] in SYSTEM_TOOLS else Path(words[0]).name), words[1:]
    if tool == "make":
        return _check_make([f"{k}={v}" for k, v in env.items()] + args)
    if tool == "orchestrate":
        return parse_error(orchestrate_parser(), args)
    if tool == "pip":
        return _check_pip(args)
    if "-m" in words and (tool.startswith("python") or tool == "docker"):
        module, rest = words[words.index("-m") + 1], words[words.index("-m") + 2 :]
        parsers = {"orchestrate": orchestrate_parser, "distproc": distproc_parser}
        if module not in parsers:
            return f"not a module the README may run: {module}"
        return parse_error(parsers[module](), rest)
    if tool in SYSTEM_TOOLS or tool == "docker" or (tool.startswith("python") and "-c" in args):
        return None
    return f"unknown command {tool!r} (not ours, and not a system tool the README may use)"


def readme_commands(text: str) -> list[str]:
    return sh_lines(text) + inline_commands(text)


@pytest.mark.parametrize("line", readme_commands(README.read_text(encoding="utf-8")))
def test_readme_command_works_as_written(line: str) -> None:
    for words in simple_commands(line):
        assert check_command(words) is None, f"README: `{line}`: {check_command(words)}"


def test_the_readme_shows_commands_of_each_kind() -> None:
    """The extraction finds what it is meant to: a regression here would pass vacuously."""
    commands = readme_commands(README.read_text(encoding="utf-8"))
    for start in ("make cluster-up", "orchestrate status", "python -m distproc worker"):
        assert any(c.startswith(start) for c in commands), start
    assert any("make job ARGS=" in c for c in commands)


@pytest.mark.parametrize(
    "line",
    [
        "make stauts",
        "make job ARGS='--kinds io'",
        "NOPE=1 make cluster-up",
        "orchestrate job --kinds io",
        "orchestrate upp",
        "orchestrat status",
        "python -m distproc worker --mastr 127.0.0.1:5000",
        "docker exec distproc-master python3 -m distproc cancle",
        "pip install -e .[tests]",
    ],
)
def test_a_wrong_command_is_caught(line: str) -> None:
    assert any(check_command(w) for w in simple_commands(line)), line


def test_the_path_is_set_before_the_first_bare_orchestrate() -> None:
    """``orchestrate`` lives in .venv/bin: the README says how to reach it before using it."""
    text = README.read_text(encoding="utf-8")
    activate = text.find(". .venv/bin/activate")
    bare = re.search(r"^orchestrate |`orchestrate [a-z]", text, re.MULTILINE)
    assert activate != -1, "the README never says how to put .venv/bin on PATH"
    assert bare is None or activate < bare.start(), "`orchestrate` is used before the PATH"


def test_the_yaml_example_is_cluster_yaml() -> None:
    text = README.read_text(encoding="utf-8")
    cluster_yaml = (REPO_ROOT / "cluster.yaml").read_text(encoding="utf-8")
    assert sync_readme.embed(text, cluster_yaml) == text, "README's example: run `make readme`"


def test_a_stale_yaml_example_is_caught() -> None:
    text = README.read_text(encoding="utf-8")
    cluster_yaml = (REPO_ROOT / "cluster.yaml").read_text(encoding="utf-8")
    stale = sync_readme.embed(text, cluster_yaml.replace("  seed: 0\n", ""))
    assert sync_readme.embed(stale, cluster_yaml) != stale
