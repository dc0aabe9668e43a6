"""Faults on a swarm: a worker's container is killed, frozen and thawed by the engine of the
node its task runs on (``SwarmBackend.engine``), as ``docker_faults`` does on one engine.

Supported: ``kill-worker`` (SIGKILL on its node; Swarm then starts a new task in its slot,
by the service's restart policy, and ``restart`` waits for it) and ``pause-worker``. Not
supported, and refused before anything changes (``missing`` says why): ``partition`` (a
swarm task cannot be taken off an overlay: the engine refuses to disconnect a swarm-scoped
network), ``blackhole`` and ``slow-link`` (their helper image is not shipped to the nodes),
``scale`` (it would change the services Swarm keeps as the file says).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

from ..base import ContainerInfo, EngineError
from ..docker_errors import engine_call
from ..faults import (
    ADD_WORKER,
    DISCONNECT,
    FREEZE,
    KILL,
    NETNS,
    RECONNECT,
    REMOVE_WORKER,
    RESTART,
    THAW,
    Faults,
)

if TYPE_CHECKING:
    import docker

    from .backend import SwarmBackend

RESTART_WAIT = 90.0  # seconds for Swarm to run a killed worker's slot again
POLL = 0.5


class SwarmFaults(Faults):
    """Faults on the nodes of a swarm (see the module docstring)."""

    backend = "swarm"
    operations: ClassVar[frozenset[str]] = frozenset({KILL, RESTART, FREEZE, THAW})
    missing: ClassVar[dict[str, str]] = {
        DISCONNECT: "a swarm task cannot be disconnected from an overlay network",
        RECONNECT: "a swarm task cannot be disconnected from an overlay network",
        NETNS: "the chaos helper image is not shipped to the nodes",
        ADD_WORKER: "scaling a service changes what Swarm keeps running",
        REMOVE_WORKER: "scaling a service changes what Swarm keeps running",
    }

    def __init__(self, owner: SwarmBackend, cluster_name: str, run: str) -> None:
        self.owner = owner
        self.cluster_name = cluster_name
        self.run = run

    def _engine(self, c: ContainerInfo) -> docker.DockerClient:
        host = next((h for h in self.owner.hosts if h.name == c.node), None)
        if host is None or not c.id:
            raise EngineError(f"{c.name} runs on no host of the file ({c.node or 'no node'})")
        return self.owner.engine(host)

    def kill(self, c: ContainerInfo) -> None:
        with engine_call(f"kill (on {c.node})", c.name):
            self._engine(c).api.kill(c.id, "SIGKILL")

    def freeze(self, c: ContainerInfo) -> None:
        with engine_call(f"pause (on {c.node})", c.name):
            self._engine(c).api.pause(c.id)

    def thaw(self, c: ContainerInfo) -> None:
        with engine_call(f"unpause (on {c.node})", c.name):
            self._engine(c).api.unpause(c.id)

    def restart(self, c: ContainerInfo) -> None:
        """Swarm restarts the slot by itself: wait (bounded) for its new task to run."""
        deadline = time.monotonic() + RESTART_WAIT
        while time.monotonic() < deadline:
            inv = self.owner.inventory(self.cluster_name)
            name = c.identity or c.name
            slots = [*inv.workers, *([inv.master] if inv.master is not None else [])]
            if any((w.identity or w.name) == name and w.state == "running" and w.id != c.id
                   for w in slots):  # fmt: skip
                return
            time.sleep(POLL)
        raise EngineError(f"Swarm did not run {c.name} again within {RESTART_WAIT:.0f}s")
