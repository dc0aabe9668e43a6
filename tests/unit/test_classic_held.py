"""``status`` says what each worker holds in a classic job too: the tasks its connections took
and have not answered. A chaos scenario asks it before it kills a worker (a classic worker
holds one task about half the time: killed at random, it lost one in 3 of 8 runs here)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from distproc import server
from distproc.broker import Broker


@pytest.fixture
def as_peer() -> Iterator[object]:
    """Calls from this thread arrive as from ``(peer, connection)``, as the server sets them."""

    def set_peer(peer: str, conn: int) -> None:
        server._local.peer, server._local.conn = peer, conn

    yield set_peer
    for attr in ("peer", "conn"):
        if hasattr(server._local, attr):
            delattr(server._local, attr)


def _held(b: Broker) -> dict[str, int]:
    return {w["identity"].get("name", w["id"]): w["leased"] for w in b.status()["workers"]}


def test_a_classic_task_taken_is_held_until_its_result_arrives(as_peer: object) -> None:
    b = Broker()
    as_peer("198.18.9.7", 1)
    b.hello("w1", {"name": "alpha-0"})
    b.submit({"kind": "square", "protocol": "classic", "tasks": 5})
    n = b.classic_take(False)
    assert _held(b) == {"alpha-0": 1}
    b.classic_result(f"{n} * {n} = {n * n}")
    assert _held(b) == {"alpha-0": 0}


def test_a_tutorial_worker_is_counted_once_its_first_result_names_it(as_peer: object) -> None:
    """No hello: nobody to name until its first result makes it ``classic@peer``; a closed
    connection holds nothing (its task was lost with it)."""
    b = Broker()
    b.submit({"kind": "square", "protocol": "classic", "tasks": 5})
    as_peer("198.18.9.8", 2)
    n = b.classic_take(False)
    assert _held(b) == {}
    b.classic_result(n * n)
    b.classic_take(False)
    assert _held(b) == {"classic@198.18.9.8": 1}
    b.connection_closed(2)
    assert _held(b) == {"classic@198.18.9.8": 0}
    assert b.current is not None and b.current.counts["lost"] == 1
