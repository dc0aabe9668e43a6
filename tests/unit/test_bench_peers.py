"""Fast smoke tests for the transport-limit measurements in bench.peers (no Dask/RQ here)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, str(REPO_ROOT))

from bench import peers  # noqa: E402

N = 200


def _check_shape(res: dict[str, Any], n: int = N) -> None:
    assert isinstance(res["name"], str) and res["name"]
    assert res["tasks"] == n
    assert res["seconds"] > 0
    assert res["rate"] > 0
    assert len(res["runs"]) == 1 and all(r > 0 for r in res["runs"])


@pytest.mark.parametrize(
    "fn",
    [
        peers.tcp_pingpong,
        peers.mp_connection_roundtrips,
        lambda n, repeat: peers.mp_connection_roundtrips(n, repeat, pickled=True),
        peers.basemanager_call_roundtrips,
    ],
    ids=["tcp", "mp-bytes", "mp-pickle", "basemanager"],
)
def test_roundtrip_measurements(fn: Callable[[int, int], dict[str, Any]]) -> None:
    _check_shape(fn(N, 1))


def test_measure_median() -> None:
    secs = iter([1.0, 4.0, 2.0])
    res = peers.measure("x", 8, lambda: next(secs), repeat=3, extra=1)
    assert res["seconds"] == 2.0 and res["rate"] == 4.0
    assert res["runs"] == [8.0, 2.0, 4.0] and res["extra"] == 1


def test_format_table_handles_skipped() -> None:
    table = peers.format_table([{"name": "rq", "skipped": "no redis"}])
    assert "skipped: no redis" in table
