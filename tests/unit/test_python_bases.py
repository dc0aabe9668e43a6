"""The Python bases, without an engine: which Python a bootstrapped root holds, debootstrap
bounded in time, the recipes and their tags. (tests/e2e/test_python_versions.py builds them
and runs the queue program on them.)"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

from orchestrate.backends import debian_pythons
from orchestrate.backends.docker_images import (
    LOCAL_BASE,
    ImageError,
    base_recipe,
    check_python,
    installed_version,
    mounts_under,
    run_bounded,
)

STATUS = """Package: libc6
Status: install ok installed
Version: 2.41-12

Package: python3
Status: install ok installed
Priority: optional
Description: interactive high-level object-oriented language
 Version: 9.9 (a continuation line is not a field)
Version: {version}

Package: python3-old
Status: deinstall ok config-files
Version: 3.9.2-3
"""


def _root(tmp_path: Path, python3: str) -> Path:
    status = tmp_path / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True)
    status.write_text(STATUS.format(version=python3))
    return tmp_path


def test_installed_version_reads_dpkg_status(tmp_path: Path) -> None:
    root = _root(tmp_path, "3.14.7-3")
    assert installed_version(root, "python3") == "3.14.7-3"
    assert installed_version(root, "libc6") == "2.41-12"
    assert installed_version(root, "python3-old") is None  # removed, its config kept
    assert installed_version(root, "perl") is None
    assert installed_version(tmp_path / "nowhere", "python3") is None


@pytest.mark.parametrize(
    ("python3", "promised", "ok"),
    [
        ("3.14.7-3", "3.14", True),
        ("3.13.5-1", "3.13", True),
        ("3.11.2-1+b1", "3.11", True),
        ("3.15.0-1", "3.14", False),  # testing moved on
        ("3.14.7-3", "3.1", False),  # 3.1 is not a prefix of 3.14
    ],
)
def test_a_suite_that_moved_on_is_refused(
    tmp_path: Path, python3: str, promised: str, ok: bool
) -> None:
    spec = base_recipe("testing", promised)
    root = _root(tmp_path, python3)
    if ok:
        check_python(root, spec)
    else:
        with pytest.raises(
            ImageError, match=re.escape(f"python3 is now {python3}, not {promised}")
        ):
            check_python(root, spec)


def test_a_root_without_python3_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="installed no python3"):
        check_python(tmp_path, base_recipe("trixie", "3.13"))


def test_recipes_and_their_tags() -> None:
    own = base_recipe()
    assert own.ref == LOCAL_BASE and own.suite == "bookworm" and own.python == "3.11"
    trixie = base_recipe("trixie", "3.13")
    assert trixie.ref.startswith("distproc-base:trixie-") and trixie.python == "3.13"
    assert trixie.command(Path("/r"))[-2:] == ["trixie", "/r"] and "python3" in trixie.include
    assert base_recipe("trixie", "3.13") == trixie  # the same recipe, the same tag
    assert base_recipe("trixie", "3.12").ref != trixie.ref  # another promise, another tag
    assert {debian_pythons.suite_of(p) for p in debian_pythons.NEWER} == {"trixie", "testing"}
    with pytest.raises(ValueError, match=re.escape("no Debian suite for Python '2.7'")):
        debian_pythons.suite_of("2.7")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.timeout(60)  # without the group stop, the read below waits 1000 s: a hang
def test_run_bounded_stops_the_whole_group_in_time() -> None:
    """A child that keeps the output pipe open (as debootstrap's wget or dpkg would) does
    not keep the caller waiting: the whole process group is stopped at the deadline."""
    lines: list[str] = []
    script = "sleep 1000 & echo $!; wait"
    with pytest.raises(ImageError, match=r"did not finish in 1s \(stopped\)[^\n]*\n\d+$"):
        run_bounded(["sh", "-c", script], 1.0, lines.append)
    [pid] = lines
    # it closed the pipe as it exited, a moment before the kernel marks it dead: looked at
    # for up to 2 s (at once, 3 times in 15 it still showed as running)
    deadline = time.monotonic() + 2.0
    while _alive(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _alive(int(pid)), "the grandchild outlived the deadline"


def test_run_bounded_says_how_it_failed() -> None:
    script = "for i in 1 2 3 4 5; do echo line $i; done; exit 3"
    with pytest.raises(ImageError, match=r"sh failed \(exit 3\); its last lines:\nline 4\nline 5$"):
        run_bounded(["sh", "-c", script], 30.0, lambda _: None, tail=2)
    run_bounded([sys.executable, "-c", "print('fine')"], 30.0, lambda _: None)


def test_mounts_under_lists_deepest_first(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "proc /proc proc rw 0 0\n"
        "proc /tmp/b/root/proc proc rw 0 0\n"
        "devpts /tmp/b/root/dev/pts devpts rw 0 0\n"
        "proc /tmp/b/rootfs/proc proc rw 0 0\n"  # another directory, same prefix
        "tmpfs /tmp/b/root/with\\040space tmpfs rw 0 0\n"
    )
    assert mounts_under(Path("/tmp/b/root"), mounts) == [
        Path("/tmp/b/root/dev/pts"),
        Path("/tmp/b/root/proc"),
        Path("/tmp/b/root/with space"),
    ]
