"""Every package of the tree is in pyproject's ``packages``: the editable install finds a
package missing there, a normal install (a wheel) silently leaves it out."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_orchestrate_package_is_listed() -> None:
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in (REPO / "orchestrate").rglob("__init__.py")
    }
    assert found - listed == set(), "add them to [tool.setuptools] packages"
