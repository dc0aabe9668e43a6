"""Docker API errors as one plain line: what failed, on which object, and what to do.

The engine's own words (``403 Client Error for http+docker://...: Forbidden ("Pool overlaps
with other one on this address space")``) name neither our object nor a way out. Every
engine call of the Docker backend goes through ``engine_call``, which turns an ``APIError``
into an ``EngineError`` whose message is the translation and whose ``raw`` keeps the
engine's text for ``--verbose``. The rules below are matched on the engine's explanation as
Docker 20.10 words it; the unit tests feed them those exact texts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import docker.errors

from .base import EngineError

__all__ = ["EngineError", "SubnetHolder", "engine_call", "overlapping", "translate"]


@dataclass(frozen=True)
class SubnetHolder:
    """A network on the engine whose subnet overlaps one we asked for."""

    network: str
    subnet: str
    cluster: str = ""  # its ``io.distproc.cluster`` label, if orchestrate made it


def translate(
    exc: docker.errors.APIError,
    action: str,
    obj: str,
    *,
    subnet: str = "",
    holders: Sequence[SubnetHolder] = (),
) -> EngineError:
    """One line for ``exc``, raised while doing ``action`` ("create network") to ``obj``
    (its name); ``subnet`` and ``holders`` explain a pool overlap."""
    said = str(exc.explanation or exc)
    low = said.lower()
    head = f"could not {action} {obj}"
    if "pool overlaps" in low:
        message = f"{head}: its subnet {subnet or '?'} " + _overlap(holders)
    elif "range of cpus is from" in low:
        message = (
            f"{head}: the engine refuses its cpus ({said}): lower resources.cpus to at most "
            "the engine's CPU count (`docker info`: CPUs)"
        )
    elif "minimum memory limit" in low:
        message = f"{head}: the engine refuses its memory ({said}): raise resources.memory"
    elif "no such image" in low:
        message = f"{head}: its image is not on the engine ({said}): run `orchestrate up` again"
    elif exc.status_code == 409 or "already in use" in low or "already exists" in low:
        kind = action.rsplit(" ", 1)[-1]
        remove = "docker network rm" if kind == "network" else "docker rm -f"
        message = (
            f"{head}: a {kind} of that name exists and is not this cluster's: "
            f"remove it (`{remove} {obj}`) or rename the cluster"
        )
    elif "not found" in low or exc.status_code == 404:
        message = (
            f"{head}: {said} (something removed it while orchestrate ran?): "
            "run `orchestrate up` again"
        )
    else:
        code = f"HTTP {exc.status_code}" if exc.status_code else "no HTTP status"
        message = (
            f"{head}: the engine said {said!r} ({code}); run with --verbose for the raw "
            "error, and check `docker info`"
        )
    return EngineError(message, raw=str(exc))


def _overlap(holders: Sequence[SubnetHolder]) -> str:
    if not holders:
        return (
            "overlaps a network on the engine (none found now: it may have gone): "
            "run `orchestrate up` again, or pick another subnet"
        )
    parts, todo = [], []
    for h in holders:
        owner = f" of cluster {h.cluster!r}" if h.cluster else ""
        parts.append(f"network {h.network!r} ({h.subnet}){owner}")
        if h.cluster:  # ours: `down` removes exactly that cluster
            todo.append(f"`orchestrate down --name {h.cluster}`")
    if not todo:  # not a distproc network (the engine's bridge, say): never advise removing it
        return f"overlaps {', '.join(parts)}, which distproc did not create: pick another subnet"
    return (
        f"overlaps {', '.join(parts)}: remove it ({' or '.join(dict.fromkeys(todo))}) "
        "or pick another subnet in the file"
    )


def overlapping(subnet: str, networks: Sequence[tuple[str, str, str]]) -> list[SubnetHolder]:
    """Which of ``networks`` (name, subnet, cluster label) overlap ``subnet``."""
    want = ipaddress.ip_network(subnet)
    out = []
    for name, other, cluster in networks:
        try:
            if ipaddress.ip_network(other).overlaps(want):
                out.append(SubnetHolder(name, other, cluster))
        except ValueError:
            continue  # an IPv6 or malformed pool: not ours to clash with
    return out


@contextmanager
def engine_call(
    action: str,
    obj: str,
    *,
    subnet: str = "",
    holders: Callable[[], Sequence[SubnetHolder]] | None = None,
) -> Iterator[None]:
    """Run the engine calls of the ``with`` body; an ``APIError`` leaves it translated.
    ``holders`` is asked (only on a pool overlap) who holds ``subnet``."""
    try:
        yield
    except docker.errors.APIError as exc:
        found: Sequence[SubnetHolder] = ()
        if holders is not None and "pool overlaps" in str(exc.explanation or exc).lower():
            try:
                found = holders()
            except docker.errors.APIError:
                found = ()
        raise translate(exc, action, obj, subnet=subnet, holders=found) from exc
