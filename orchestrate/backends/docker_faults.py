"""Faults on a Docker engine (the local backend's; the swarm backend uses parts of it on the
engine of the node a task runs on).

Freezing is the engine's ``pause`` (the cgroup freezer), killing its ``kill``: killing a
frozen container delivers SIGKILL before it is thawed (Docker sends the signal, then
resumes), so a worker frozen at a chosen moment dies at that moment, without running
another instruction. Leaving a network is the engine's ``disconnect``; coming back, a
``connect`` at the same address, so a TCP connection that survived can resume.

Inside a network namespace (iptables, tc) a helper container does the work, from the chaos
helper image (``docker_images.chaos_image``: Debian with iptables and iproute2). Why a
helper rather than ``nsenter`` from this host: it needs neither root here nor iptables/tc on
the host (their versions are pinned by the image), it runs the same on any engine the
backend reaches (a swarm node's too), and it is a labelled container like the rest, removed
by label; it joins the target's namespace (``--network container:ID``) with ``NET_ADMIN``
alone, as root in no other namespace, read-only, and is gone when its command ends. The
cluster's containers keep their hardening: nothing of theirs changes but their network.
"""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import docker
import docker.errors

from .. import labels
from ..events import NullEvents
from ..model import Cluster, WorkerSlot
from .base import ContainerInfo, EngineError, ExecResult, NetworkInfo
from .docker_errors import engine_call
from .docker_images import chaos_image
from .faults import (
    ADD_WORKER,
    DISCONNECT,
    FREEZE,
    IPTABLES,
    KERNEL_FEATURES,
    KILL,
    NETEM,
    NETNS,
    RECONNECT,
    REMOVE_WORKER,
    RESTART,
    TBF,
    THAW,
    Faults,
)

if TYPE_CHECKING:
    from ..events import Events
    from .docker_local import DockerBackend

#: A helper's command is a few iptables/tc calls: this bounds it, with room for a loaded host.
HELPER_TIMEOUT = 60
#: Each feature tried in a namespace of the helper's own (``--network none``), then undone.
PROBE_SCRIPT = r"""
probe() {
  name=$1; shift
  if out=$("$@" 2>&1); then echo "$name ok"; else echo "$name refused: $(echo $out)"; fi
}
probe tbf tc qdisc add dev lo root tbf rate 1mbit burst 32kbit latency 100ms
tc qdisc del dev lo root 2>/dev/null
probe netem tc qdisc add dev lo root netem delay 1ms
tc qdisc del dev lo root 2>/dev/null
probe iptables iptables -w -A OUTPUT -m comment --comment distproc-probe -j DROP
"""
#: What the kernel's refusal means, said with it.
FEATURE_CONFIG = {
    TBF: "CONFIG_NET_SCH_TBF",
    NETEM: "CONFIG_NET_SCH_NETEM",
    IPTABLES: "nf_tables (CONFIG_NF_TABLES)",
}


def parse_probe(output: str) -> dict[str, str]:
    """``PROBE_SCRIPT``'s lines as ``{feature: '' or why not}``; a feature it said nothing
    of is missing too, with that said."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        name, _, rest = line.partition(" ")
        if name in KERNEL_FEATURES:
            found[name] = "" if rest == "ok" else rest.removeprefix("refused: ").strip()
    return {
        f: found.get(f, "the probe said nothing of it (its output: " + output.strip() + ")")
        for f in KERNEL_FEATURES
    }


class DockerFaults(Faults):
    """Faults on the local engine (see the module docstring)."""

    backend = "local"
    operations: ClassVar[frozenset[str]] = frozenset(
        {KILL, RESTART, FREEZE, THAW, DISCONNECT, RECONNECT, NETNS, ADD_WORKER, REMOVE_WORKER}
    )

    def __init__(self, owner: DockerBackend, cluster_name: str, run: str) -> None:
        self.owner = owner
        self.client: docker.DockerClient = owner.client
        self.cluster_name = cluster_name
        self.run = run
        self.id = secrets.token_hex(4)  # this chaos run's: on what it makes
        self._features: dict[str, str] | None = None
        self._image = ""

    # -- the container itself ------------------------------------------------------------
    def kill(self, c: ContainerInfo) -> None:
        """SIGKILL every process of the container. The engine signals only its init (pid 1,
        ``docker-init``); the others die when pid 1 does, a moment later, and a worker thawed
        in that moment can still send a result. So a frozen container's processes are
        signalled first, from a helper in its pid namespace (``kill -1``: all but pid 1 and
        the helper): each dies as it is thawed, before it runs another instruction."""
        with engine_call("inspect", c.name):
            frozen = bool(self.client.api.inspect_container(c.id)["State"].get("Paused"))
        if frozen:
            res = self._helper(["sh", "-c", "kill -s KILL -- -1"], "none", None,
                               f"killing the processes of {c.name}", pid_of=c.id)  # fmt: skip
            if res.exit_code != 0:
                raise EngineError(f"could not kill the processes of {c.name}: {res.stderr}")
        with engine_call("kill", c.name):
            self.client.api.kill(c.id, "SIGKILL")  # and thaws it, if frozen

    def restart(self, c: ContainerInfo) -> None:
        with engine_call("start", c.name):
            self.client.api.start(c.id)

    def freeze(self, c: ContainerInfo) -> None:
        with engine_call("pause", c.name):
            self.client.api.pause(c.id)

    def thaw(self, c: ContainerInfo) -> None:
        with engine_call("unpause", c.name):
            self.client.api.unpause(c.id)

    # -- its networks --------------------------------------------------------------------
    def disconnect(self, c: ContainerInfo, network: NetworkInfo) -> None:
        with engine_call(f"disconnect from {network.engine_name}", c.name):
            self.client.api.disconnect_container_from_network(c.id, network.id)

    def reconnect(self, c: ContainerInfo, network: NetworkInfo, address: str) -> None:
        with engine_call(f"connect to {network.engine_name}", c.name):
            self.client.api.connect_container_to_network(c.id, network.id, ipv4_address=address)

    def in_netns(self, c: ContainerInfo, argv: list[str], events: Events) -> ExecResult:
        return self._helper(argv, f"container:{c.id}", events, f"in the namespace of {c.name}")

    def kernel_features(self, events: Events) -> dict[str, str]:
        if self._features is None:
            res = self._helper(["sh", "-c", PROBE_SCRIPT], "none", events, "probing the kernel")
            self._features = parse_probe(res.stdout)
            for name, why in self._features.items():
                if why:
                    self._features[name] = f"{why} ({FEATURE_CONFIG[name]} not set?)"
        return dict(self._features)

    def _helper(
        self, argv: list[str], network_mode: str, events: Events | None, what: str, pid_of: str = ""
    ) -> ExecResult:
        """Run ``argv`` in a helper container (the module docstring says why and how): with
        ``NET_ADMIN`` in a network namespace, or with ``KILL`` in the pid namespace of the
        container ``pid_of``."""
        if not self._image:
            with engine_call("find or build", "the chaos helper image"):
                self._image = chaos_image(self.client, events or NullEvents())
        container = None
        with engine_call("run a chaos helper", what):
            try:
                container = self.client.containers.create(
                    self._image,
                    argv,
                    network_mode=network_mode,
                    pid_mode=f"container:{pid_of}" if pid_of else None,
                    user="0:0",
                    cap_drop=["ALL"],
                    cap_add=["KILL"] if pid_of else ["NET_ADMIN"],
                    read_only=True,
                    tmpfs={"/run": "rw,size=1m", "/tmp": "rw,size=1m"},
                    security_opt=["no-new-privileges:true"],
                    mem_limit="64m",
                    pids_limit=64,
                    labels=labels.for_cluster(
                        self.cluster_name, self.run, labels.ROLE_CHAOS, chaos=self.id
                    ),
                    detach=True,
                )
                container.start()
                try:
                    code = container.wait(timeout=HELPER_TIMEOUT)["StatusCode"]
                except Exception as exc:  # a time-out is the requests library's own error
                    raise EngineError(
                        f"a chaos helper {what} did not end within {HELPER_TIMEOUT}s ({exc})"
                    ) from None
                out = container.logs(stdout=True, stderr=False).decode(errors="replace")
                err = container.logs(stdout=False, stderr=True).decode(errors="replace")
                return ExecResult(int(code), out, err)
            finally:
                if container is not None:
                    with contextlib.suppress(docker.errors.NotFound):
                        container.remove(force=True)

    # -- scale -----------------------------------------------------------------------------
    def add_worker(self, cluster: Cluster, group: str) -> ContainerInfo:
        inv = self.owner.inventory(cluster.name)
        g = cluster.group(group)
        with engine_call("list", f"the containers of cluster {cluster.name!r}"):
            taken = {
                c.name for c in self.client.containers.list(
                    all=True, filters=labels.cluster_filter(cluster.name)
                )
            }  # fmt: skip
        index = next(i for i in range(g.count, g.count + 1000)
                     if cluster.container_name(group, i) not in taken)  # fmt: skip
        slot = WorkerSlot(g, index, cluster.container_name(group, index))
        image, key = inv.images.get("worker", ""), inv.authkey_file
        if not image or not key:
            raise EngineError(f"cluster {cluster.name!r}: its master names no worker image or key")
        self.owner.start_worker(cluster, slot, inv.run, image, Path(key), chaos=self.id)
        added = self.owner.inventory(cluster.name)
        return next(w for w in added.workers if w.name == slot.name)

    def remove_worker(self, c: ContainerInfo, grace: float) -> None:
        with engine_call("stop", c.name):
            self.client.api.stop(c.id, timeout=max(1, round(grace)))
            self.client.api.remove_container(c.id, force=True)

    def cleanup(self) -> int:
        """Helpers left by this run (an interrupted one), found by their label."""
        flt = labels.cluster_filter(self.cluster_name)
        flt["label"] += [f"{labels.CHAOS}={self.id}", f"{labels.ROLE}={labels.ROLE_CHAOS}"]
        removed = 0
        with engine_call("remove", "the chaos helpers"):
            for container in self.client.containers.list(all=True, filters=flt):
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True)
                    removed += 1
        return removed
