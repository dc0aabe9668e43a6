"""A fake Docker engine at the docker-py layer (``client.networks``, ``client.containers``,
``client.volumes``, ``client.info``), for testing ``DockerBackend`` and what sits on it
without an engine.

It refuses what Docker 20.10 refuses, with the engine's own texts (``ERRORS``, each
reproduced once on a real engine and pasted here): a subnet that overlaps another network's,
and more CPUs than it has.
"""

from __future__ import annotations

import ipaddress
import itertools
from typing import Any

import docker.errors
import requests

NCPU = 2
MEM_TOTAL = 25_276_502_016
API = "http+docker://localhost/v1.41"

#: (status, reason, url path, explanation) of real Docker 20.10 refusals; ``str()`` of the
#: ``APIError`` built from one is exactly what docker-py printed for it.
ERRORS = {
    "overlap": (
        403,
        "Forbidden",
        "/networks/create",
        "Pool overlaps with other one on this address space",
    ),
    "network_exists": (
        409,
        "Conflict",
        "/networks/create",
        "network with name e2e-11-fast-errs-a already exists",
    ),
    "cpus": (
        400,
        "Bad Request",
        "/containers/create?name=e2e-11-fast-errs-c",
        "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available",
    ),
    "memory": (
        400,
        "Bad Request",
        "/containers/create?name=e2e-11-fast-errs-c",
        "Minimum memory limit allowed is 6MB",
    ),
    "no_image": (
        404,
        "Not Found",
        "/containers/create?name=e2e-11-fast-errs-c",
        "No such image: e2e-11-fast-nosuch:1",
    ),
    "name_in_use": (
        409,
        "Conflict",
        "/containers/create?name=e2e-11-fast-errs-c",
        'Conflict. The container name "/e2e-11-fast-errs-c" is already in use by container '
        '"5d4306631dc8aa42c48458ac8c40532f0f907cffb43ef39c8391a085ad6c87cd". You have to '
        "remove (or rename) that container to be able to reuse that name.",
    ),
    "network_gone": (
        404,
        "Not Found",
        "/containers/5d4306631dc8aa42c48458ac8c40532f0f907cffb43ef39c8391a085ad6c87cd/start",
        "network e2e-11-fast-nosuchnet not found",
    ),
}


def api_error(which: str) -> docker.errors.APIError:
    """The ``APIError`` docker-py raises for ``ERRORS[which]``, built as docker-py builds it."""
    status, reason, path, explanation = ERRORS[which]
    response = requests.Response()
    response.status_code, response.reason, response.url = status, reason, API + path
    http = requests.exceptions.HTTPError(f"{status} Client Error", response=response)
    return docker.errors.APIError(http, response=response, explanation=explanation)


def _matches(obj_labels: dict[str, str], filters: dict[str, Any] | None) -> bool:
    for want in (filters or {}).get("label", []):
        key, _, value = want.partition("=")
        if obj_labels.get(key) != value:
            return False
    return True


class FakeNetwork:
    def __init__(self, engine: FakeEngine, name: str, subnet: str, labels: dict[str, str]):
        self.engine, self.name, self.id = engine, name, f"net{next(engine.ids)}"
        self.attrs: dict[str, Any] = {
            "Name": name,
            "Labels": labels,
            "IPAM": {"Config": [{"Subnet": subnet}]},
            "Containers": {},
            "Internal": True,
        }

    def reload(self) -> None:
        pass

    def connect(self, container: Any) -> None:
        self.attrs["Containers"][container.id] = {}

    def disconnect(self, container: str, force: bool = False) -> None:
        self.attrs["Containers"] = {
            k: v for k, v in self.attrs["Containers"].items() if k != container
        }

    def remove(self) -> None:
        self.engine.networks.items.remove(self)


class FakeNetworks:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.items: list[FakeNetwork] = []

    def create(self, name: str, ipam: Any = None, labels: Any = None, **_: Any) -> FakeNetwork:
        subnet = ipam["Config"][0]["Subnet"]
        for other in self.items:
            if other.name == name:
                raise api_error("network_exists")
            theirs = other.attrs["IPAM"]["Config"][0]["Subnet"]
            if ipaddress.ip_network(theirs).overlaps(ipaddress.ip_network(subnet)):
                raise api_error("overlap")
        net = FakeNetwork(self.engine, name, subnet, dict(labels or {}))
        self.items.append(net)
        self.engine.created.append(name)
        return net

    def list(self, filters: dict[str, Any] | None = None) -> list[FakeNetwork]:
        return [n for n in self.items if _matches(n.attrs["Labels"], filters)]

    def get(self, name: str) -> FakeNetwork:
        return next(n for n in self.items if n.name == name)


class FakeContainer:
    def __init__(self, engine: FakeEngine, name: str, labels: dict[str, str]) -> None:
        self.engine, self.name, self.labels = engine, name, labels
        self.id, self.status = f"c{next(engine.ids)}", "created"
        self.attrs: dict[str, Any] = {"NetworkSettings": {"Networks": {}}}

    def start(self) -> None:
        self.status = "running"

    def remove(self, force: bool = False) -> None:
        self.engine.containers.items.remove(self)


class FakeContainers:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.items: list[FakeContainer] = []

    def create(
        self, image: str, command: Any, name: str, labels: Any, nano_cpus: int = 0, **_: Any
    ) -> FakeContainer:
        if nano_cpus > NCPU * 10**9:
            raise api_error("cpus")
        c = FakeContainer(self.engine, name, dict(labels))
        self.items.append(c)
        self.engine.created.append(name)
        return c

    def list(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[Any]:
        if filters and "network" in filters:
            return []
        return [c for c in self.items if _matches(c.labels, filters)]


class FakeVolume:
    def __init__(self, engine: FakeEngine, name: str, labels: dict[str, str]) -> None:
        self.engine, self.name, self.id = engine, name, name
        self.attrs: dict[str, Any] = {"Name": name, "Labels": labels}

    def remove(self) -> None:
        self.engine.volumes.items.remove(self)


class FakeVolumes:
    """Named volumes: made once (the engine gives back the one there for a name it has)."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.items: list[FakeVolume] = []

    def create(self, name: str, labels: Any = None, **_: Any) -> FakeVolume:
        for v in self.items:
            if v.name == name:
                return v
        v = FakeVolume(self.engine, name, dict(labels or {}))
        self.items.append(v)
        self.engine.created.append(name)
        return v

    def get(self, name: str) -> FakeVolume:
        for v in self.items:
            if v.name == name:
                return v
        raise docker.errors.NotFound(f"get {name}: no such volume")

    def list(self, filters: dict[str, Any] | None = None) -> list[FakeVolume]:
        return [v for v in self.items if _matches(v.attrs["Labels"], filters)]


class FakeEngine:
    """What ``DockerBackend`` reads of a ``docker.DockerClient``; ``created`` names every
    object made, in order, so that a test can tell "nothing was created"."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.created: list[str] = []
        self.networks = FakeNetworks(self)
        self.containers = FakeContainers(self)
        self.volumes = FakeVolumes(self)

    def info(self) -> dict[str, Any]:
        return {"NCPU": NCPU, "MemTotal": MEM_TOTAL, "PidsLimit": True}

    def labelled(self, cluster: str) -> list[str]:
        """Names of every object labelled with ``cluster``."""
        flt = {"label": [f"io.distproc.cluster={cluster}"]}
        objects = [*self.networks.list(flt), *self.containers.list(True, flt),
                   *self.volumes.list(flt)]  # fmt: skip
        return [o.name for o in objects]
