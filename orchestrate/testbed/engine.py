"""The test bed's objects on the outer Docker engine: the LAN network, a volume and a
container per machine. Found and removed by the ``io.distproc.testbed`` label, never by name.

A machine container is what the issue's probe found to work here in place of
``--privileged`` (which fails on this build machine): every capability but SYS_RESOURCE,
seccomp, AppArmor and the masked /proc and /sys paths lifted, every device allowed in its
cgroup, and /var/lib/docker on a volume (overlay2 cannot stack on the container's own
overlay root). Its start script remounts /sys and the cgroup mounts read-write. /run is a
tmpfs, so a machine stopped (or SIGKILLed) and started again finds no stale pid file of its
dockerd. There is no restart policy: a machine killed by a test stays down until ``up``.

The LAN network is ``internal``: the host still reaches every machine by its address (it
holds the bridge's gateway address, .1), the machines reach each other, and nothing on them
reaches past this box (BRIEF: traffic only to our own containers).
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
from docker.types import IPAMConfig, IPAMPool

from .. import labels
from ..backends.docker_errors import SubnetHolder, engine_call, overlapping
from ..backends.docker_local import remove_network
from .plan import LAN, LAN_GATEWAY, NETWORK_NAME, Existing, Machine, TestbedError

#: How a machine container is made: docker-py ``create_host_config`` arguments...
MACHINE_OPTIONS: dict[str, Any] = {
    "cap_add": ["ALL"],
    "cap_drop": ["SYS_RESOURCE"],
    "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
    "device_cgroup_rules": ["a *:* rwm"],
    "tmpfs": {"/run": "rw,nosuid,nodev,exec,mode=755"},
}
#: ...and the API's fields behind the CLI's ``--security-opt systempaths=unconfined``
#: (nothing masked or read-only under /proc and /sys), which docker-py has no argument for:
#: the engine refuses ``systempaths=`` as a security option.
HOST_CONFIG_FIELDS: dict[str, Any] = {"MaskedPaths": [], "ReadonlyPaths": []}
DOCKER_DIR = "/var/lib/docker"
#: A probe of the inner engine gives up after this long (``timeout`` inside the machine).
PROBE_SECONDS = 5

#: A file put into a machine before it starts: path -> (content, mode). Directories in
#: ``DIRS`` are created with their mode (root/.ssh must be 0700 for sshd).
Payload = Mapping[str, tuple[bytes, int]]
DIRS = {"root/.ssh": 0o700, "etc/docker": 0o755}


@dataclass(frozen=True)
class MachineState:
    """A machine container as the engine has it."""

    name: str
    address: str
    state: str  # the container's: running, exited, created...
    inputs: str
    id: str

    @property
    def running(self) -> bool:
        return self.state == "running"


class BedEngine:
    """The outer engine, as the test bed uses it."""

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        self.client = client or docker.from_env()

    # -- looking -----------------------------------------------------------------------
    def machines(self) -> dict[str, MachineState]:
        """The machine containers, by machine name."""
        out = {}
        flt = labels.testbed_filter(labels.ROLE_TESTBED_MACHINE)
        for c in self.client.containers.list(all=True, filters=flt):
            name = c.labels.get(labels.MACHINE, c.name)
            nets = c.attrs.get("NetworkSettings", {}).get("Networks") or {}
            address = (nets.get(NETWORK_NAME) or {}).get("IPAddress", "")
            if not address:  # a stopped container has no address; its request stays
                ipam = (nets.get(NETWORK_NAME) or {}).get("IPAMConfig") or {}
                address = ipam.get("IPv4Address", "")
            out[name] = MachineState(name, address, c.status, c.labels.get(labels.INPUTS, ""), c.id)
        return out

    def existing(self) -> dict[str, Existing]:
        return {n: Existing(m.inputs, m.running) for n, m in self.machines().items()}

    def inner_version(self, name: str) -> str | None:
        """The machine's own engine's version, asked inside it; None if it does not answer
        (within ``PROBE_SECONDS``), or the machine is not running."""
        cmd = ["timeout", str(PROBE_SECONDS), "docker", "version", "--format"]
        try:
            code, out = self.client.containers.get(name).exec_run([*cmd, "{{.Server.Version}}"])
        except docker.errors.APIError:
            return None
        text = out.decode(errors="replace").strip()
        return text if code == 0 and text else None

    def wait_inner(self, name: str, deadline: float, every: float = 0.25) -> str:
        """Poll the machine's engine until it answers; its version. TestbedError (with the
        end of the machine's log) at ``deadline`` (a ``time.monotonic()`` value)."""
        while True:
            version = self.inner_version(name)
            if version:
                return version
            state = self._state(name)
            if state != "running" or time.monotonic() >= deadline:
                why = f"stopped ({state})" if state != "running" else "did not answer in time"
                raise TestbedError(
                    f"{name}: its Docker engine {why}; the machine's log ends with:\n"
                    + self.log_tail(name)
                )
            time.sleep(every)

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            return self.client.containers.get(name).logs(tail=lines).decode(errors="replace")
        except docker.errors.APIError as exc:
            return f"(no log: {exc.explanation or exc})"

    def _state(self, name: str) -> str:
        try:
            c = self.client.containers.get(name)
        except docker.errors.NotFound:
            return "gone"
        return str(c.status)

    def network_exists(self) -> bool:
        return bool(self.client.networks.list(filters=labels.testbed_filter()))

    # -- making ------------------------------------------------------------------------
    def check_free(self, machines: list[Machine]) -> None:
        """Refuse, before anything is built or created, names held by objects the test bed
        did not make, and a test bed network that is not the plan's."""
        for net in self.client.networks.list(names=[NETWORK_NAME]):
            if net.name == NETWORK_NAME and labels.TESTBED not in (net.attrs.get("Labels") or {}):
                raise TestbedError(
                    f"a network named {NETWORK_NAME} exists and is not the test bed's: remove "
                    f"it (`docker network rm {NETWORK_NAME}`) or free the name"
                )
        self._our_network()
        for m in machines:
            for kind, get, obj_name in (
                ("container", self.client.containers.get, m.name),
                ("volume", self.client.volumes.get, m.volume),
            ):
                try:
                    obj = get(obj_name)
                except docker.errors.NotFound:
                    continue
                found = obj.attrs.get("Labels") or obj.attrs.get("Config", {}).get("Labels")
                if labels.TESTBED not in (found or {}):
                    raise TestbedError(
                        f"a {kind} named {obj_name} exists and is not the test bed's: "
                        "remove or rename it (test machines are named tb-1, tb-2...)"
                    )

    def _our_network(self) -> bool:
        """True if the test bed's network exists (and is the plan's: else TestbedError)."""
        for net in self.client.networks.list(filters=labels.testbed_filter()):
            configs = (net.attrs.get("IPAM") or {}).get("Config") or []
            if net.name == NETWORK_NAME and any(c.get("Subnet") == str(LAN) for c in configs):
                return True
            raise TestbedError(
                f"network {net.name} is labelled {labels.TESTBED} but is not the test bed's "
                f"{NETWORK_NAME} on {LAN}: run `orchestrate testbed down` first"
            )
        return False

    def ensure_network(self) -> bool:
        """The LAN network; True if it was created now."""
        if self._our_network():
            return False
        with engine_call(
            "create network", NETWORK_NAME, subnet=str(LAN), holders=self._subnet_holders
        ):
            self.client.networks.create(
                NETWORK_NAME,
                driver="bridge",
                internal=True,
                check_duplicate=True,
                ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=str(LAN), gateway=str(LAN_GATEWAY))]),
                labels=labels.for_testbed(labels.ROLE_TESTBED_NETWORK),
            )
        return True

    def _subnet_holders(self) -> list[SubnetHolder]:
        pools = []
        for net in self.client.networks.list():
            for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
                if cfg.get("Subnet"):
                    pools.append((net.name, cfg["Subnet"], ""))
        return overlapping(str(LAN), pools)

    def create(self, m: Machine, image: str, inputs: str, payload: Payload) -> None:
        """Create machine ``m`` (and its volume, unless it is there), deliver ``payload``
        into it, then start it."""
        volume_labels = labels.for_testbed(labels.ROLE_TESTBED_VOLUME, machine=m.name)
        try:
            self.client.volumes.get(m.volume)
        except docker.errors.NotFound:
            with engine_call("create volume", m.volume):
                self.client.volumes.create(m.volume, labels=volume_labels)
        api = self.client.api
        host_config = api.create_host_config(
            binds={m.volume: {"bind": DOCKER_DIR, "mode": "rw"}},
            network_mode=NETWORK_NAME,
            **MACHINE_OPTIONS,
        )
        host_config.update(HOST_CONFIG_FIELDS)
        endpoint = api.create_endpoint_config(ipv4_address=str(m.address))
        with engine_call("create container", m.name):
            created = api.create_container(
                image,
                name=m.name,
                hostname=m.name,
                labels=labels.for_testbed(
                    labels.ROLE_TESTBED_MACHINE, machine=m.name, inputs=inputs
                ),
                volumes=[DOCKER_DIR],
                host_config=host_config,
                networking_config=api.create_networking_config({NETWORK_NAME: endpoint}),
                detach=True,
            )
        container = self.client.containers.get(created["Id"])
        try:
            with engine_call("copy keys into container", m.name):
                container.put_archive("/", tar_of(payload))
            with engine_call("start container", m.name):
                container.start()
        except BaseException:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
            raise

    def start(self, name: str) -> None:
        with engine_call("start container", name):
            self.client.containers.get(name).start()

    def remove_machine(self, name: str, volume: bool) -> int:
        """Remove machine ``name`` (and its volume); how many objects went."""
        removed = 0
        with contextlib.suppress(docker.errors.NotFound):
            self.client.containers.get(name).remove(force=True)
            removed += 1
        if volume:
            for v in self.client.volumes.list(filters=labels.testbed_filter()):
                if v.attrs.get("Labels", {}).get(labels.MACHINE) == name:
                    with contextlib.suppress(docker.errors.NotFound):
                        v.remove(force=True)
                        removed += 1
        return removed

    def sweep(self) -> dict[str, int]:
        """Remove every container, volume and network labelled ``io.distproc.testbed``
        (containers first: a volume or network in use cannot go); counts by kind."""
        flt = labels.testbed_filter()
        counts = {"containers": 0, "volumes": 0, "networks": 0}
        for c in self.client.containers.list(all=True, filters=flt):
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True)
                counts["containers"] += 1
        for v in self.client.volumes.list(filters=flt):
            with contextlib.suppress(docker.errors.NotFound):
                v.remove(force=True)
                counts["volumes"] += 1
        for net in self.client.networks.list(filters=flt):
            counts["networks"] += remove_network(net)
        return counts

    def leftovers(self) -> list[str]:
        """Whatever still carries the label (after ``sweep``: nothing)."""
        flt = labels.testbed_filter()
        found = [f"container {c.name}" for c in self.client.containers.list(all=True, filters=flt)]
        found += [f"volume {v.name}" for v in self.client.volumes.list(filters=flt)]
        found += [f"network {n.name}" for n in self.client.networks.list(filters=flt)]
        return found


def tar_of(payload: Payload) -> bytes:
    """A tar of ``payload`` (owned by root), with the directories of ``DIRS`` it needs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        names = {p.lstrip("/") for p in payload}
        for directory, mode in DIRS.items():
            if any(n.startswith(directory + "/") for n in names):
                info = tarfile.TarInfo(directory)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, int(time.time())
                tar.addfile(info)
        for path, (content, mode) in sorted(payload.items()):
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(content), mode, int(time.time())
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()
