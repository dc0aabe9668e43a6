"""The machines of ``hosts:``, over ssh: what Swarm does not do itself.

``check`` asks each host whether it can be a node; ``provision`` forms the swarm, labels its
nodes and ships images without a registry (idempotent); ``leave`` undoes it. Host keys are
always verified (``orchestrate.remote``).
"""

from .check import HostCheck, check, refuse_encryption_without_esp
from .plan import Action, PlanError
from .provision import leave, provision

__all__ = [
    "Action",
    "HostCheck",
    "PlanError",
    "check",
    "leave",
    "provision",
    "refuse_encryption_without_esp",
]
