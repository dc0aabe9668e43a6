"""Backends realise a cluster on an engine: ``local`` (one Docker engine) and ``swarm``.

``make_backend`` is the one factory: the CLI, the bench and the tests ask it for the backend
that ``backend:`` in cluster.yaml names, and never construct one themselves. Implementations
are imported late, so that ``validate`` and the model need no Docker SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..model import Cluster
    from .base import Backend

KINDS = ("local", "swarm")


def make_backend(kind: str = "local", cluster: Cluster | None = None) -> Backend:
    """The backend called ``kind`` (``backend:`` in cluster.yaml), connected to its engine.
    ``cluster`` is what a backend needs beyond the kind (the swarm's hosts). Raises
    ``EngineError`` when the engine cannot be reached, ``ValueError`` for an unknown kind
    (the model has already refused one in a file)."""
    if kind == "local":
        from .docker_local import DockerBackend

        return DockerBackend()
    if kind == "swarm":
        from .swarm import SwarmBackend

        if cluster is None:
            raise ValueError("the swarm backend needs the cluster (its hosts)")
        return SwarmBackend.for_cluster(cluster)
    raise ValueError(f"unknown backend {kind!r}: one of {', '.join(KINDS)}")
