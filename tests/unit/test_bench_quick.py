"""Smoke test of the quick benchmark: real master and worker processes, tiny n (< 15 s)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, str(REPO_ROOT))

from bench import quick  # noqa: E402


def _children() -> list[int]:
    """Child processes of this test process, zombies included."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid():
                found.append(int(d.name))
    return found


@pytest.mark.timeout(60)
def test_quick_shape_and_last_line() -> None:
    before = set(_children())  # earlier tests' processes are not this test's business
    res = quick.run(n_leased=2000, n_classic=200, repeat=1, workers=(1,), roundtrips=200,
                    large=5000)  # fmt: skip
    for protocol, n in (("leased", 2000), ("million", 5000), ("classic", 200)):
        r = res[protocol][1]
        assert r["tasks"] == n and r["rate"] > 0 and r["e2e_rate"] > 0
        assert 0 < r["e2e_over_master"] <= 1  # the master's clock is inside the client's
        assert r["timing_ms"]["end_to_end"] >= r["timing_ms"]["master_clock"] > 0
        assert len(r["runs"]) == 1 and r["workers"] == 1
        assert r["protocol"] == ("classic" if protocol == "classic" else "leased")
        assert sum(r["tasks_per_worker"][0]) == n
        assert len(r["foreign_cores"]) == 1 and r["foreign_cores"][0] >= 0
    assert {r["name"] for r in res["roundtrips"]} == {
        "our master: ping",
        "our master: empty exchange",
    }
    assert res["headline"] == pytest.approx(res["leased"][1]["rate"] / res["classic"][1]["rate"])
    assert res["limit_fraction"] > 0
    printed = quick.lines(res)
    assert re.fullmatch(r"leased/classic: \d+\.\dx", printed[-1]), printed[-1]
    assert float(printed[-1].split()[-1][:-1]) == pytest.approx(res["headline"], abs=0.05)
    assert not set(_children()) - before  # every master/worker process was stopped and reaped
