"""Who and where a process is: hostname, pid, network namespace, the CPUs it may use, and the
Python it runs (the dashboard shows it per worker)."""

from __future__ import annotations

import math
import os
import platform
import resource
import socket
from pathlib import Path
from typing import Any

from .tcp import socket_of


def netns() -> str:
    """The network namespace id, as ``readlink /proc/self/ns/net`` prints it."""
    try:
        return os.readlink("/proc/self/ns/net")
    except OSError:
        return "unknown"


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup's CFS quota (v2 ``cpu.max`` or v1 ``cfs_quota_us``)."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for d in (root / "cpu", root / "cpu,cpuacct", root):
        try:
            quota_us = int((d / "cpu.cfs_quota_us").read_text())
            period_us = int((d / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota_us <= 0 else quota_us / period_us
    return None


def usable_cpus() -> int:
    """CPUs this process may really use: its affinity, capped by its cgroup quota (>= 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


PIDS_MAX_FILES = ("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max")  # v2, v1


def pids_limit() -> int | None:
    """How many threads and processes this process may have: its cgroup's ``pids.max``
    (v2 or v1), or its RLIMIT_NPROC; None when neither limits it."""
    for path in PIDS_MAX_FILES:
        try:
            text = open(path).read().strip()  # noqa: SIM115 (one read)
        except OSError:
            continue
        if text.isdigit():
            return int(text)
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    return None if soft == resource.RLIM_INFINITY or os.geteuid() == 0 else soft


def local_ip_of(fd: int) -> str:
    """The local address of a connected TCP socket, given its file descriptor."""
    with socket_of(fd) as s:
        return s.getsockname()[0]


def of_master(instance: str) -> dict[str, Any]:
    """The identity the master gives in ``hello``, ``status`` and reports; ``python`` as
    workers report theirs (``describe``)."""
    return {
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "netns": netns(),
        "instance": instance,
        "python": platform.python_version(),
    }


def describe(name: str, group: str, local_ip: str = "") -> dict[str, object]:
    """The identity a worker sends with ``hello``; the master records it as claimed."""
    return {
        "name": name,
        "group": group,
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "local_ip": local_ip,
        "netns": netns(),
        "cpus": usable_cpus(),
        "python": platform.python_version(),
    }
