"""``orchestrate status --json``: its documented shape, even for a cluster with no workers.

A user joins a worker by hand exactly when the file has none, and reads the image to run from
``images.worker``: it must be there before any worker container exists.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrate import cli, labels
from orchestrate.backends import docker_local
from orchestrate.backends.base import Inventory

IMAGE = "distproc:abc123"
DockerBackend = docker_local.DockerBackend  # the real one, before a test patches the name


class FakeContainers:
    def __init__(self, containers: list[Any]) -> None:
        self._containers = containers

    def list(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[Any]:
        if filters and "network" in filters:
            return []  # nobody joined by hand
        return self._containers


class FakeNetworks:
    def list(self, filters: dict[str, Any] | None = None) -> list[Any]:
        net = SimpleNamespace(
            id="n1",
            name="mini-lan",
            attrs={
                "IPAM": {"Config": [{"Subnet": "198.18.5.0/28"}]},
                "Labels": {labels.NETWORK: "lan"},
                "Internal": True,
            },
        )
        net.reload = lambda: None
        return [net]


def _master(extra_labels: dict[str, str]) -> Any:
    return SimpleNamespace(
        id="m1",
        name="mini-master",
        status="running",
        labels={
            labels.ROLE: labels.ROLE_MASTER,
            labels.RUN: "r1",
            labels.PORT: "5000",
            labels.IMAGE: IMAGE,
            **extra_labels,
        },
        attrs={
            "NetworkSettings": {
                "Networks": {"mini-lan": {"NetworkID": "n1", "IPAddress": "198.18.5.2"}},
                "SandboxKey": "/var/run/docker/netns/m",
            }
        },
    )


def _backend(extra_labels: dict[str, str]) -> DockerBackend:
    client = SimpleNamespace(
        containers=FakeContainers([_master(extra_labels)]),
        networks=FakeNetworks(),
        info=lambda: {"Name": "fake-host"},
    )
    return DockerBackend(client)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "extra",
    [{labels.WORKER_IMAGE: IMAGE}, {}],
    ids=["labelled-master", "master-from-before-the-label"],
)
def test_a_cluster_without_workers_lists_the_worker_image(extra: dict[str, str]) -> None:
    inv = _backend(extra).inventory("mini")
    assert inv.workers == [] and inv.master is not None
    assert inv.as_status()["images"] == {"master": IMAGE, "worker": IMAGE}


def test_status_json_always_has_both_images(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(docker_local, "DockerBackend", lambda: _backend({}))
    assert cli.main(["status", "--name", "mini", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["workers"] == [] and doc["images"]["worker"] == IMAGE


def test_a_cluster_that_is_not_running_still_has_the_documented_keys() -> None:
    assert Inventory("gone").as_status()["images"] == {"master": "", "worker": ""}
