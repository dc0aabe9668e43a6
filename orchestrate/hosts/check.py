"""``hosts check``: can each host run a node? ssh, Docker, its version, the architecture, free
disk and IPsec ESP (for ``encrypted: true``), asked of every host at once with fabric.

One row per host; a host that cannot answer gets its reason in the row, not a traceback.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from fabric import ThreadingGroup
from fabric.exceptions import GroupException

from .. import remote
from ..backends.base import EngineError
from ..events import Events
from ..model import Cluster, Host

#: One command, so one round trip per host; each line is ``key=value``.
PROBE = (
    "echo arch=$(uname -m); "
    "echo docker=$(docker version --format '{{.Server.Version}}' 2>/dev/null || echo none); "
    "echo disk=$(df -Pk /var/lib/docker 2>/dev/null | awk 'NR==2 {print $4}'); "
    "echo esp=$(" + "{esp}" + ")"
)
#: An IPsec ESP state with Docker's cipher (AES-GCM, as encrypted overlays use), added in a
#: throwaway network namespace (unshare -n): nothing on the host changes. Where the kernel
#: lacks ESP (the build machine's: CONFIG_INET_ESP unset), `ip` says "Requested AEAD
#: algorithm not found" or "Requested type not found".
ESP_PROBE = (
    "unshare -n ip xfrm state add src 198.18.255.1 dst 198.18.255.2 proto esp spi 0x1234 "
    "reqid 1 mode transport aead 'rfc4106(gcm(aes))' "
    "0x0102030405060708090a0b0c0d0e0f1011121314 128 >/dev/null 2>&1 && echo yes || "
    "{ command -v ip >/dev/null && command -v unshare >/dev/null && echo no || echo unknown; }"
)
MIN_FREE_KIB = 2 * 1024 * 1024  # an image or two, and their containers' layers


@dataclass
class HostCheck:
    """What one host answered (``error`` set when it could not)."""

    host: str
    address: str
    ssh: bool = False
    docker: str = ""
    arch: str = ""
    free_gib: float = 0.0
    esp: str = ""  # yes, no, unknown
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.ssh and not self.error

    def as_json(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


def check(cluster: Cluster, events: Events, trust_new: bool = False) -> list[HostCheck]:
    """Every host of ``cluster``, in file order."""
    events.step(f"checking {len(cluster.hosts)} host(s) over ssh")
    rows = {h.name: HostCheck(h.name, h.address) for h in cluster.hosts}
    connections = {}

    def connect(host: Host) -> None:
        try:
            connections[host.name] = remote.connection(host, trust_new=trust_new)
            rows[host.name].ssh = True
        except EngineError as exc:
            rows[host.name].error = str(exc)

    with ThreadPoolExecutor(max(1, len(cluster.hosts))) as pool:
        list(pool.map(connect, cluster.hosts))
    if connections:
        group = ThreadingGroup.from_connections(list(connections.values()))
        by_conn = {id(c): name for name, c in connections.items()}
        try:
            results = group.run(PROBE.replace("{esp}", ESP_PROBE), hide=True, warn=True)
        except GroupException as exc:
            results = exc.result
        for conn, result in results.items():
            row = rows[by_conn[id(conn)]]
            if isinstance(result, BaseException):
                row.error = f"the probe command failed: {result}"
                continue
            _read(row, result.stdout)
        group.close()
    return [rows[h.name] for h in cluster.hosts]


def _read(row: HostCheck, stdout: str) -> None:
    values = dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)
    row.arch = values.get("arch", "")
    row.docker = values.get("docker", "")
    row.esp = values.get("esp", "unknown") or "unknown"
    disk = values.get("disk", "")
    row.free_gib = round(int(disk) / 1024 / 1024, 1) if disk.isdigit() else 0.0
    problems = []
    if row.docker in ("", "none"):
        problems.append("no Docker engine answers (`docker version` failed)")
    if disk.isdigit() and int(disk) < MIN_FREE_KIB:
        problems.append(f"only {row.free_gib} GiB free in /var/lib/docker")
    row.error = "; ".join(problems)


def refuse_encryption_without_esp(cluster: Cluster, events: Events) -> None:
    """``encrypted: true`` where a host cannot do IPsec ESP is refused before anything is
    created: Swarm would make the overlay and then drop every packet on it, silently."""
    wanted = [n.name for n in cluster.networks if n.encrypted]
    if not wanted:
        return
    events.step(f"probing the hosts for IPsec ESP ({', '.join(wanted)}: encrypted)")
    rows = check(cluster, events)
    lacking = [f"{r.host} ({r.esp if r.ok else r.error})" for r in rows if r.esp != "yes"]
    if lacking:
        raise EngineError(
            f"network(s) {', '.join(wanted)}: encrypted: true needs IPsec ESP in every host's "
            f"kernel, and {', '.join(lacking)} cannot (an encrypted overlay there drops every "
            "packet): set encrypted: false and keep the hosts on a private network, or use "
            "hosts whose kernels have ESP (CONFIG_INET_ESP)"
        )
