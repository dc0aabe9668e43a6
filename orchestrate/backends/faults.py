"""What chaos scenarios do to a cluster's containers: one engine-neutral interface, realised
per backend (``Backend.faults()``), like the backends themselves.

Every operation acts on one container of the cluster as the inventory describes it
(``ContainerInfo``: its id and its node), never on anything else. A backend lists the
operations it can do in ``operations``; a scenario that needs another one is refused before
anything is changed (``orchestrate.chaos``). The cluster's own containers keep their
hardening: what needs privileges (``in_netns``: iptables, tc) runs in a short-lived helper
container that joins the target's network namespace with ``NET_ADMIN`` and nothing else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from ..events import Events
    from ..model import Cluster
    from .base import ContainerInfo, ExecResult, NetworkInfo

#: The operations a backend may offer (``Faults.operations`` names some of them).
KILL, RESTART, FREEZE, THAW = "kill", "restart", "freeze", "thaw"
DISCONNECT, RECONNECT, NETNS = "disconnect", "reconnect", "netns"
ADD_WORKER, REMOVE_WORKER = "add-worker", "remove-worker"
OPERATIONS = (KILL, RESTART, FREEZE, THAW, DISCONNECT, RECONNECT, NETNS, ADD_WORKER,
              REMOVE_WORKER)  # fmt: skip

#: Kernel features the namespace faults use, as ``kernel_features`` reports them.
TBF, NETEM, IPTABLES = "tbf", "netem", "iptables"
KERNEL_FEATURES = (TBF, NETEM, IPTABLES)


class Faults(ABC):
    """Faults on the containers of one cluster (see the module docstring). Every method
    raises ``EngineError`` when the engine refuses or cannot be reached."""

    #: the backend's kind ("local", "swarm")
    backend: ClassVar[str]
    #: what this backend can do, from ``OPERATIONS``
    operations: ClassVar[frozenset[str]]
    #: why each operation this backend lacks is missing (shown when a scenario is refused)
    missing: ClassVar[dict[str, str]] = {}

    @abstractmethod
    def kill(self, c: ContainerInfo) -> None:
        """SIGKILL the container's processes (its container stays, exited)."""

    def restart(self, c: ContainerInfo) -> None:
        """Bring a killed container back (started again, or its replacement running)."""
        raise NotImplementedError

    def freeze(self, c: ContainerInfo) -> None:
        """Stop every process of the container where it is (the cgroup freezer)."""
        raise NotImplementedError

    def thaw(self, c: ContainerInfo) -> None:
        raise NotImplementedError

    def disconnect(self, c: ContainerInfo, network: NetworkInfo) -> None:
        """Take the container off ``network``: its interface there goes."""
        raise NotImplementedError

    def reconnect(self, c: ContainerInfo, network: NetworkInfo, address: str) -> None:
        """Put the container back on ``network`` at ``address`` (its address before)."""
        raise NotImplementedError

    def in_netns(self, c: ContainerInfo, argv: list[str], events: Events) -> ExecResult:
        """Run ``argv`` in the container's network namespace with ``NET_ADMIN`` (a helper
        container with iptables and tc, gone when it ends)."""
        raise NotImplementedError

    def kernel_features(self, events: Events) -> dict[str, str]:
        """Each of ``KERNEL_FEATURES``: '' where this kernel has it, else what refused it
        (probed once, in a throwaway namespace, and remembered)."""
        raise NotImplementedError

    def add_worker(self, cluster: Cluster, group: str) -> ContainerInfo:
        """Start one more worker of ``group`` (the next free index), as ``up`` starts them."""
        raise NotImplementedError

    def remove_worker(self, c: ContainerInfo, grace: float) -> None:
        """Stop a worker as a scale-down does (SIGTERM: it finishes or hands back what it
        holds, within ``grace`` seconds, then SIGKILL) and remove its container."""
        raise NotImplementedError

    def cleanup(self) -> int:
        """Remove what the faults themselves left (helper containers); how many."""
        return 0
