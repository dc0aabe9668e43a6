"""The workers the master knows, across jobs: who they are, where from, and whether live."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .text import ip_sorted

LIVE_SECONDS = 5.0  # a worker unseen for longer is not counted as connected
MAX_LIVE_WORKERS = 4096  # a hello from one more new worker is refused
KEEP_IDENTITIES = 1024  # past this many records, gone workers keep their id only


@dataclass
class WorkerRecord:
    """What the master knows of one worker across jobs."""

    index: int
    wid: str
    identity: dict[str, Any]
    peers: set[str] = field(default_factory=set)
    first_seen: float = 0.0
    last_seen: float = 0.0
    left: bool = False

    def live(self, now: float) -> bool:
        """Connected: seen lately, and not gone on purpose."""
        return not self.left and now - self.last_seen < LIVE_SECONDS


class RegistryFull(ValueError):
    """Too many live workers: a new one is refused (it travels as a plain ValueError)."""

    def __reduce__(self) -> tuple[type, tuple[str, ...]]:
        return ValueError, tuple(map(str, self.args))


class WorkerRegistry:
    """Workers by id and by index (ledgers refer to a worker by its index).

    Bounded: at most ``MAX_LIVE_WORKERS`` live at once, and a gone worker's identity is
    dropped once there are more than ``KEEP_IDENTITIES`` records, so that 20,000 hellos with
    16 KB identities (330 MB, measured) cost an id each. Records are never removed: a job's
    tallies name workers by index.
    """

    def __init__(self) -> None:
        self.workers: dict[str, WorkerRecord] = {}
        self.by_index: list[WorkerRecord] = []
        self.classic_peers: dict[str, int] = {}  # peer IP -> worker, decided per classic job
        self._active = (0.0, 0)  # (when counted, how many), recounted at most every 0.5 s

    def seen(self, wid: str, peer: str) -> WorkerRecord | None:
        """A known worker called from ``peer``: it is live again; None if unknown."""
        rec = self.workers.get(wid)
        if rec is not None:
            rec.last_seen = time.monotonic()
            rec.peers.add(peer)
            rec.left = False
        return rec

    def join(self, wid: str, identity: dict[str, Any], peer: str) -> WorkerRecord:
        rec = self.workers.get(wid)
        if rec is None:
            near = self.active() >= MAX_LIVE_WORKERS - 64  # the cached count, mostly
            if near and self.active(fresh=True) >= MAX_LIVE_WORKERS:
                raise RegistryFull(f"the master has {MAX_LIVE_WORKERS} live workers already")
            rec = self._new(wid, identity)
            self._forget_gone()
        rec.identity = dict(identity)
        self.seen(wid, peer)
        return rec

    def remember(self, wid: str, identity: dict[str, Any], peers: list[str]) -> int:
        """A worker named by a job replayed from a journal: known (its index, for the job's
        tally), but not connected until it says hello to this master."""
        rec = self.workers.get(wid)
        if rec is None:
            rec = self._new(wid, identity)
            rec.first_seen = rec.last_seen = time.monotonic() - LIVE_SECONDS
            self._active = (0.0, 0)  # recount: it is not live
        rec.peers.update(peers)
        return rec.index

    def leave(self, wid: str) -> None:
        rec = self.workers.get(wid)
        if rec is not None:
            rec.left = True

    def _new(self, wid: str, identity: dict[str, Any]) -> WorkerRecord:
        rec = WorkerRecord(len(self.by_index), wid, dict(identity))
        rec.first_seen = rec.last_seen = time.monotonic()
        self.workers[wid] = rec
        self.by_index.append(rec)
        when, count = self._active
        self._active = (when, count + 1)  # it is live: the cached count knows at once
        return rec

    def name(self, index: int) -> str:
        return self.by_index[index].wid

    def _forget_gone(self) -> None:
        if len(self.by_index) <= KEEP_IDENTITIES or len(self.by_index) % 64:
            return  # every 64th new record: the sweep is O(records)
        now = time.monotonic()
        for r in self.by_index[:-KEEP_IDENTITIES]:
            if not r.live(now) and r.identity:
                r.identity, r.peers = {}, set()

    def active(self, fresh: bool = False) -> int:
        """Live workers: counted at most every 0.5 s (a lease asks it; O(records))."""
        now = time.monotonic()
        when, count = self._active
        if fresh or now - when > 0.5:
            count = sum(1 for r in self.by_index if r.live(now))
            self._active = (now, count)
        return count

    def _ours_at(self, peer: str) -> list[WorkerRecord]:
        now = time.monotonic()
        named = (r for r in self.by_index if "name" in r.identity)
        return [r for r in named if peer in r.peers and r.live(now)]

    def classic_name(self, peer: str) -> str:
        """Who is behind a classic connection from ``peer``, without recording anything."""
        index = self.classic_peers.get(peer)
        if index is not None:
            return self.by_index[index].wid
        ours = self._ours_at(peer)
        return ours[0].wid if len(ours) == 1 else f"classic@{peer}"

    def classic_index(self, peer: str) -> int | None:
        """The worker ``classic`` would count ``peer``'s results for, without recording
        anything (None: a tutorial worker that has sent no result yet)."""
        index = self.classic_peers.get(peer)
        if index is not None:
            return index
        ours = self._ours_at(peer)
        return ours[0].index if len(ours) == 1 else None

    def classic(self, peer: str) -> int:
        """Who sent a classic result: tutorial workers send no identity, so the peer IP
        decides. It is our own worker if exactly one live worker has said hello from that
        IP (it keeps its identity); otherwise each peer IP counts as one worker. Attribution
        is by IP: a tutorial worker sharing an IP with one of ours counts as ours."""
        index = self.classic_peers.get(peer)
        if index is None:
            ours = self._ours_at(peer)
            if len(ours) == 1:
                index = ours[0].index
            else:
                wid = f"classic@{peer}"
                rec = self.workers.get(wid) or self._new(wid, {"peer": peer, "protocol": "classic"})
                index = rec.index
            self.classic_peers[peer] = index
        rec = self.by_index[index]
        rec.last_seen = time.monotonic()
        rec.peers.add(peer)
        return index

    def status(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            {
                "id": r.wid,
                "identity": r.identity,
                "peers": ip_sorted(r.peers - {""}),
                "connected": r.live(now),
                "left": r.left,
                "last_seen_seconds": round(now - r.last_seen, 3),
            }
            for r in self.by_index
        ]
