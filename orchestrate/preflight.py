"""Resources checked against the engine before ``up`` creates anything.

The model can tell that ``cpus: 0`` is wrong; only the engine can tell that ``cpus: 64`` is
(it has 2). Docker refuses such a container halfway through ``create``, in its own words,
after the networks exist. Asked first (``Backend.engine_limits``), the same limit is a
config error at the field's ``file:line:col`` (exit 2), and nothing has been created.
"""

from __future__ import annotations

from collections.abc import Iterator

from .backends.base import EngineLimits
from .model import Cluster, Problem, Resources, format_bytes
from .model.errors import Path


def _nodes(cluster: Cluster) -> Iterator[tuple[Path, Resources]]:
    """Every container spec that gets created, with the path of its ``resources``."""
    yield ("master", "resources"), cluster.master.resources
    for i, group in enumerate(cluster.workers):
        if group.count:
            yield ("workers", i, "resources"), group.resources


def resource_problems(
    cluster: Cluster, limits: EngineLimits
) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings) of the cluster's resources against what the engine has.

    Errors are what the engine would refuse (``cpus`` above its CPU count); warnings are
    limits it accepts but cannot mean (memory above the host's, pids it does not enforce).
    """
    errors: list[Problem] = []
    warnings: list[Problem] = []
    for path, res in _nodes(cluster):
        if limits.cpus and res.cpus > limits.cpus:
            errors.append(
                cluster.problem(
                    (*path, "cpus"),
                    f"cpus {res.cpus:g} is more than the engine has ({limits.cpus} CPU"
                    f"{'s' * (limits.cpus != 1)}, see `docker info`): use at most {limits.cpus}",
                )
            )
        if limits.memory and res.memory > limits.memory:
            warnings.append(
                cluster.problem(
                    (*path, "memory"),
                    f"memory {format_bytes(res.memory)} is more than the engine's host has "
                    f"({limits.memory / 2**30:.1f}GiB): the limit limits nothing",
                )
            )
    if not limits.pids_limit:
        warnings.append(
            cluster.problem(
                ("master", "resources"),
                "the engine does not enforce pids limits (no cgroup pids controller): "
                "`pids` is ignored on every container",
            )
        )
    return errors, warnings
