"""The swarm backend: a cluster as Docker Swarm services over the machines of ``hosts:``."""

from .backend import SwarmBackend

__all__ = ["SwarmBackend"]
