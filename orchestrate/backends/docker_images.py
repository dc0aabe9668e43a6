"""Images on the local engine: the base, and the distproc image built on it.

The distproc image is tagged by a hash of everything it is built from (the Dockerfile, the
queue program, the shipped kinds and the base image's id), so nothing is rebuilt when nothing
changed. Builds never pull (``pull=False``). The base is ``images.base``; ``auto`` takes a
slim Python image that is present (or can be pulled), else bootstraps a Debian base once with
debootstrap and ``docker import``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import docker
import docker.errors

from .. import labels
from ..events import Events
from ..model import OrchestrateError

IMAGES_DIR = Path(__file__).resolve().parents[2] / "images"
BUILD_INPUTS = ("Dockerfile", "distproc", "distproc_kinds", "tutorial_worker.py")
IMAGE_REPO = "distproc"
SLIM_CANDIDATES = ("python:3.12-slim", "python:3.13-slim", "python:3.11-slim", "python:3-slim")
PULL_DEFAULT = "python:3.12-slim"
LOCAL_BASE = "distproc-base:bookworm"
SUITE = "bookworm"


class ImageError(OrchestrateError):
    """An image could not be found, pulled, bootstrapped or built."""


def _files(root: Path) -> list[Path]:
    out = []
    for name in BUILD_INPUTS:
        p = root / name
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out += [
                f
                for f in p.rglob("*")
                if f.is_file() and "__pycache__" not in f.parts and f.suffix not in (".pyc", ".pyo")
            ]
    return sorted(out)


def input_hash(base_id: str, root: Path = IMAGES_DIR) -> str:
    """A digest of the image's inputs: the same inputs give the same tag."""
    h = hashlib.sha256(base_id.encode())
    for f in _files(root):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _exists(client: docker.DockerClient, ref: str) -> docker.models.images.Image | None:
    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def _pull_allowed() -> bool:
    return os.environ.get("DISTPROC_PULL", "auto") != "never"


def _try_pull(client: docker.DockerClient, ref: str, events: Events) -> bool:
    if not _pull_allowed():
        return False
    events.info(f"pulling {ref}")
    try:
        client.images.pull(ref)
        return True
    except docker.errors.APIError as exc:
        events.warn(f"cannot pull {ref} (no registry access?): {exc.explanation or exc}")
        return False


def resolve_base(client: docker.DockerClient, setting: str, events: Events) -> str:
    """The base image reference for ``images.base``."""
    if setting != "auto":
        if _exists(client, setting) or _try_pull(client, setting, events):
            return setting
        raise ImageError(
            f"base image {setting!r} is not on this engine and cannot be pulled; "
            "use images.base: auto to bootstrap a local Debian base"
        )
    for ref in SLIM_CANDIDATES:
        if _exists(client, ref):
            return ref
    if _exists(client, LOCAL_BASE):
        return LOCAL_BASE
    if _try_pull(client, PULL_DEFAULT, events):
        return PULL_DEFAULT
    bootstrap_base(client, events)
    return LOCAL_BASE


def bootstrap_base(client: docker.DockerClient, events: Events) -> None:
    """Make ``distproc-base:bookworm`` offline-friendly: debootstrap + ``docker import``."""
    events.step(
        f"no Python base image and no registry: bootstrapping {LOCAL_BASE} with debootstrap "
        "(once, about a minute; needs root and Debian's package mirror)"
    )
    if os.geteuid() != 0:
        raise ImageError(
            "bootstrapping a base image needs root (debootstrap). Run `make cluster-up` as "
            "root once, or pull a slim Python image (docker pull python:3.12-slim), or set "
            "images.base in cluster.yaml"
        )
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed: apt-get install -y debootstrap")
    with tempfile.TemporaryDirectory(prefix="distproc-base-") as tmp:
        root = Path(tmp) / "root"
        cmd = ["debootstrap", "--variant=minbase", "--include=python3", SUITE, str(root)]
        with subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                events.detail(line.rstrip())
        if proc.returncode != 0:
            raise ImageError(f"debootstrap failed (exit {proc.returncode}); see the lines above")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(root / junk, ignore_errors=True)
        archive = Path(tmp) / "rootfs.tar"
        events.info("packing the root file system")
        with tarfile.open(archive, "w") as tar:
            for entry in sorted(root.iterdir()):
                tar.add(entry, arcname=entry.name)
        events.info(f"importing it as {LOCAL_BASE}")
        repo, tag = LOCAL_BASE.split(":")
        client.api.import_image_from_file(
            str(archive),
            repository=repo,
            tag=tag,
            changes=[
                f"LABEL {labels.MANAGED}=true {labels.ROLE}={labels.ROLE_BASE}",
                'CMD ["python3"]',
            ],
        )
    events.info(f"{LOCAL_BASE} is ready; later runs reuse it")


_STEP = re.compile(r"^Step (\d+)/(\d+)")


def build_image(client: docker.DockerClient, base: str, events: Events) -> str:
    """The distproc image for ``base``, built only if its input hash is new."""
    base_image = _exists(client, base)
    if base_image is None:
        raise ImageError(f"base image {base} disappeared")
    tag = f"{IMAGE_REPO}:{input_hash(base_image.id)}"
    if _exists(client, tag):
        events.info(f"image {tag} is up to date (cached)")
        return tag
    events.step(f"building {tag} on {base}")
    stream = client.api.build(
        path=str(IMAGES_DIR),
        dockerfile="Dockerfile",
        tag=tag,
        buildargs={"BASE": base},
        pull=False,
        rm=True,
        forcerm=True,
        network_mode="none",
        decode=True,
        labels={
            labels.MANAGED: "true",
            labels.ROLE: labels.ROLE_IMAGE,
            labels.INPUTS: tag.split(":")[1],
        },
    )
    for chunk in stream:
        if "error" in chunk:
            raise ImageError(f"building {tag} failed: {chunk['error'].strip()}")
        for line in chunk.get("stream", "").splitlines():
            if not line.strip():
                continue
            m = _STEP.match(line)
            if m:
                events.progress("build", int(m.group(1)) - 1, int(m.group(2)), "build steps")
            events.detail(line)
    if _exists(client, tag) is None:
        raise ImageError(f"building {tag} produced no image")
    events.progress("build", 1, 1, "build steps")
    return tag
