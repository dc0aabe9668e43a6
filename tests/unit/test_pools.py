"""The worker's pools, on their own (no master)."""

from __future__ import annotations

import logging

import pytest
from distproc.pools import Pools
from distproc.text import plural


@pytest.mark.parametrize(
    ("n", "word", "text"),
    [(1, "process", "1 process"), (2, "process", "2 processes"), (1, "thread", "1 thread"),
     (32, "thread", "32 threads")],
)  # fmt: skip
def test_plural(n: int, word: str, text: str) -> None:
    assert plural(n, word) == text


def test_pool_log_says_1_process_not_1_processes(caplog: pytest.LogCaptureFixture) -> None:
    pools = Pools(concurrency=1, threads=4, cpus=1, start_method="spawn")
    try:
        with caplog.at_level(logging.INFO, logger="distproc.worker"):
            pools.get("processes")
            pools.get("threads")
    finally:
        pools.shutdown(terminate=False)
    assert "started a pool of 1 process" in caplog.messages
    assert "started a pool of 1 thread" in caplog.messages
