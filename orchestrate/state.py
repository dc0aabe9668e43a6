"""The cluster's state directory on the host: the authkey, and the last report.

Default ``.cluster/<name>/`` under the current directory (git-ignored); ``DISTPROC_STATE_DIR``
moves it. The authkey file is 0600 and is bind-mounted read-only into the containers: it is
never in an image layer, an env var, a command line, ``docker inspect`` output or a log.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from .model import Cluster, OrchestrateError

#: The uid the containers run as when the orchestrator runs as root (never root inside).
CONTAINER_UID = 10001
KEY_IN_CONTAINER = "/run/distproc/authkey"


def state_dir(cluster_name: str) -> Path:
    """Where this cluster's host-side state lives."""
    base = Path(os.environ.get("DISTPROC_STATE_DIR", ".cluster"))
    return (base / cluster_name).absolute()


def container_user() -> tuple[int, int]:
    """(uid, gid) for containers: the caller's own ids, or 10001 when the caller is root."""
    uid, gid = os.getuid(), os.getgid()
    return (CONTAINER_UID, CONTAINER_UID) if uid == 0 else (uid, gid)


def ensure_authkey(cluster: Cluster, config_dir: Path) -> Path:
    """The key file to mount: generated once per cluster, or copied from ``auth.key_file``."""
    directory = state_dir(cluster.name)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    path = directory / "authkey"
    if cluster.auth.key_file:
        source = Path(cluster.auth.key_file)
        if not source.is_absolute():
            source = config_dir / source
        try:
            key = source.read_bytes().strip()
        except OSError as exc:
            raise OrchestrateError(f"auth.key_file {source}: {exc.strerror}") from None
        if not key:
            raise OrchestrateError(f"auth.key_file {source} is empty")
    elif path.exists():
        return _own(path)
    else:
        key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return _own(path)


def _own(path: Path) -> Path:
    path.chmod(0o600)
    uid, gid = container_user()
    if os.getuid() == 0:
        os.chown(path, uid, gid)
    return path


def save_report(cluster_name: str, report: dict[str, Any]) -> Path:
    """Keep the last job report next to the key, for ``status`` and CI artifacts."""
    directory = state_dir(cluster_name)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "last-report.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    return path
