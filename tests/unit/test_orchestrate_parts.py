"""Host-side parts that need no engine: labels, the key file, image hashing, the graph."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from orchestrate import graph, labels, state
from orchestrate.backends.docker_images import input_hash
from orchestrate.model import load_cluster

REPO = Path(__file__).resolve().parents[2]


def test_every_label_name_is_under_the_prefix() -> None:
    names = [
        v
        for k, v in vars(labels).items()
        if k.isupper() and not k.startswith(("_", "ROLE_")) and k != "PREFIX"
    ]
    assert names and all(n.startswith(labels.PREFIX + ".") for n in names)
    lab = labels.for_cluster("c", "r1", labels.ROLE_WORKER, group="g")
    assert lab == {
        labels.MANAGED: "true",
        labels.CLUSTER: "c",
        labels.RUN: "r1",
        labels.ROLE: "worker",
        labels.GROUP: "g",
    }
    with pytest.raises(KeyError):  # only the names of this module can be labels
        labels.for_cluster("c", "r1", labels.ROLE_WORKER, colour="red")
    assert labels.cluster_filter("c") == {
        "label": [f"{labels.MANAGED}=true", f"{labels.CLUSTER}=c"]
    }


def test_authkey_is_generated_once_private_and_readable_by_the_container_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTPROC_STATE_DIR", str(tmp_path))
    cluster = load_cluster(REPO / "cluster.yaml")
    path = state.ensure_authkey(cluster, REPO)
    key = path.read_bytes()
    assert len(key) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_uid == state.container_user()[0]
    assert state.ensure_authkey(cluster, REPO).read_bytes() == key  # stable across runs


def test_authkey_from_a_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTPROC_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "my.key").write_text("sesame\n")
    cluster = load_cluster(REPO / "cluster.yaml")
    cluster = cluster.model_copy(
        update={"auth": cluster.auth.model_copy(update={"key_file": "my.key"})}
    )
    assert state.ensure_authkey(cluster, tmp_path).read_bytes() == b"sesame"


def test_container_user_is_never_root() -> None:
    uid, gid = state.container_user()
    assert uid != 0 and gid != 0
    if os.getuid() != 0:
        assert uid == os.getuid()


def test_image_tag_follows_its_inputs(tmp_path: Path) -> None:
    root = tmp_path / "images"
    (root / "distproc").mkdir(parents=True)
    (root / "Dockerfile").write_text("FROM x\n")
    (root / "distproc" / "a.py").write_text("print(1)\n")
    first = input_hash("sha256:base", root)
    (root / "distproc" / "__pycache__").mkdir()
    (root / "distproc" / "__pycache__" / "a.pyc").write_bytes(b"junk")
    assert input_hash("sha256:base", root) == first  # caches don't count
    assert input_hash("sha256:other", root) != first  # a new base rebuilds
    (root / "distproc" / "a.py").write_text("print(2)\n")
    assert input_hash("sha256:base", root) != first  # a code change rebuilds


def test_graph_shows_every_container_and_link() -> None:
    cluster = load_cluster(REPO / "cluster.yaml")
    text = graph.mermaid(cluster)
    assert text.startswith("flowchart LR")
    for name in [cluster.master_name, *cluster.worker_names()]:
        assert name in text
    assert text.count(" --- ") == 2 + 4  # master on two networks, four workers on one each
    assert graph.dot(cluster).count(" -- ") == 6
