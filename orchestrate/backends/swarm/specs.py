"""What the swarm backend asks of Swarm, made from the model alone: names, placement
constraints and service specs. Pure: nothing here talks to an engine (tests read the specs).

- The master is a 1-replica service and each worker group a service with ``replicas=count``;
  their tasks are named by Swarm's slots, ``<cluster>-<group>-<slot>`` (1-based: Swarm's
  ``{{.Task.Slot}}``), which is each task's hostname and so the worker's ``--name``.
- Endpoint mode ``dnsrr``: the kernels this must run on may lack IPVS (the build machine's
  does), which Swarm's default virtual IPs need. Workers reach the master by its service
  name, which dnsrr resolves to the master task's own address.
- The authkey is a Swarm secret, mounted read-only at ``/run/secrets/<file>`` for the
  containers' user only; the environment names that path, never the key.
- The master's journal is a local volume on its node (``journal_volume``), made by Swarm
  when the task starts there; the master is pinned to one node (the first manager by
  default), so a restarted master finds it. A master placed on several hosts could start
  again on another, with an empty journal.
- Containers run as ``state.container_user()``, read-only, with every capability dropped
  and an init, as on the local backend.
"""

from __future__ import annotations

from typing import Any

from docker.types import (
    ContainerSpec,
    EndpointSpec,
    Mount,
    NetworkAttachmentConfig,
    Placement,
    Resources,
    RestartPolicy,
    SecretReference,
    ServiceMode,
    TaskTemplate,
)

from ... import labels
from ...model import Cluster, Host, WorkerGroup
from ...model.topology import Resources as ResourceLimits
from ...state import container_user
from ..base import JOURNAL_DIR, journal_volume, master_command

KEY_FILE_NAME = "distproc-authkey"
KEY_IN_CONTAINER = f"/run/secrets/{KEY_FILE_NAME}"
TMPFS_BYTES = 64 * 1024 * 1024
#: A crashed task is restarted after this; a machine lost has its tasks rescheduled by Swarm
#: whatever the policy says.
RESTART_DELAY_NS = 1_000_000_000


def network_name(cluster: Cluster, net: str) -> str:
    """The overlay's name on the swarm (as the local backend names its bridges)."""
    return f"{cluster.name}-{net}"


def group_service(cluster: Cluster, group: str) -> str:
    return f"{cluster.name}-{group}"


def secret_name(cluster: Cluster, run: str) -> str:
    """Secrets cannot be updated in place: each ``up`` makes its own."""
    return f"{cluster.name}-authkey-{run}"


def worker_names(cluster: Cluster) -> list[str]:
    """The names the workers report, in the model's order: their task hostnames, slot 1 up."""
    return [
        f"{group_service(cluster, slot.group.name)}-{slot.index + 1}"
        for slot in cluster.iter_workers()
    ]


def constraints(cluster: Cluster, allowed: list[Host]) -> list[str]:
    """Swarm constraints that admit exactly the nodes of ``allowed``: Swarm ANDs them and has
    no OR, so one host is named (``==``) and several are what remains after excluding the
    others (``!=``). Every node provisioned carries ``labels.HOST``; requiring our managed
    label keeps tasks off nodes of the swarm that are not in ``hosts:``."""
    key = f"node.labels.{labels.HOST}"
    names = [h.name for h in allowed]
    if len(names) == 1:
        return [f"{key}=={names[0]}"]
    others = [h.name for h in cluster.hosts if h.name not in names]
    return [f"node.labels.{labels.MANAGED}==true", *(f"{key}!={n}" for n in others)]


def _resources(limits: ResourceLimits) -> Resources:
    res = Resources(cpu_limit=limits.nano_cpus, mem_limit=limits.memory)
    # API 1.41 (Docker 20.10) takes a pids limit for tasks; docker-py 7 has no argument for
    # it, and its Resources is the API's own mapping
    res["Limits"]["Pids"] = limits.pids
    return res


def _container(
    cluster: Cluster,
    run: str,
    image: str,
    args: list[str],
    hostname: str,
    role_labels: dict[str, str],
    secret: tuple[str, str] | None,
) -> ContainerSpec:
    uid, gid = container_user()
    secrets = []
    env = {}
    if secret is not None:
        secret_id, name = secret
        secrets = [SecretReference(secret_id, name, KEY_FILE_NAME, str(uid), str(gid), 0o400)]
        env = {"DISTPROC_AUTHKEY_FILE": KEY_IN_CONTAINER}
    return ContainerSpec(
        image,
        args=args,  # the image's entrypoint runs `python3 -m distproc`
        hostname=hostname,
        env=env,
        user=f"{uid}:{gid}",
        labels=role_labels,
        mounts=[Mount("/tmp", None, type="tmpfs", tmpfs_size=TMPFS_BYTES)],
        secrets=secrets,
        read_only=True,
        init=True,
        cap_drop=["ALL"],
    )


def _service(
    cluster: Cluster,
    name: str,
    container: ContainerSpec,
    limits: ResourceLimits,
    networks: list[str],
    network_ids: dict[str, str],
    allowed: list[Host],
    replicas: int,
    restart: str,
    service_labels: dict[str, str],
) -> dict[str, Any]:
    """Keyword arguments of ``APIClient.create_service``."""
    template = TaskTemplate(
        container,
        resources=_resources(limits),
        restart_policy=RestartPolicy(condition=restart, delay=RESTART_DELAY_NS),
        placement=Placement(constraints=constraints(cluster, allowed)),
        networks=[NetworkAttachmentConfig(network_ids[n]) for n in networks],
    )
    return {
        "task_template": template,
        "name": name,
        "labels": service_labels,
        "mode": ServiceMode("replicated", replicas=replicas),
        "endpoint_spec": EndpointSpec(mode="dnsrr"),
    }


def master_service(
    cluster: Cluster, run: str, image: str, worker_image: str, secret: tuple[str, str],
    network_ids: dict[str, str],
) -> dict[str, Any]:  # fmt: skip
    """The master: one replica on ``master_hosts()``, restarted whatever made it stop."""
    port = str(cluster.master.port)
    own = labels.for_cluster(
        cluster.name, run, labels.ROLE_MASTER, port=port, image=image, worker_image=worker_image
    )
    container = _container(cluster, run, image, master_command(cluster), cluster.master_name,
                           own, secret)  # fmt: skip
    if cluster.master.journal:  # a local volume on the master's node: pinned, it stays there
        journal = labels.for_cluster(cluster.name, run, labels.ROLE_JOURNAL)
        container["Mounts"].append(
            Mount(JOURNAL_DIR, journal_volume(cluster.name), type="volume", labels=journal)
        )
    return _service(
        cluster, cluster.master_name, container, cluster.master.resources,
        cluster.master.networks, network_ids, cluster.master_hosts(), 1, "any", own,
    )  # fmt: skip


def worker_args(cluster: Cluster, group: WorkerGroup) -> list[str]:
    """No ``--name``: a worker takes its hostname, which is its task's slot name."""
    args = ["worker", "--master", f"{cluster.master_name}:{cluster.master.port}"]
    args += ["--group", group.name, "--connect-timeout", "600"]
    if group.mode != "auto":
        args += ["--mode", group.mode]
    if group.concurrency != "auto":
        args += ["--concurrency", str(group.concurrency)]
    return args


def worker_service(
    cluster: Cluster, group: WorkerGroup, run: str, image: str, secret: tuple[str, str],
    network_ids: dict[str, str],
) -> dict[str, Any]:  # fmt: skip
    """A worker group: ``count`` replicas on the group's hosts, restarted when they fail."""
    name = group_service(cluster, group.name)
    own = labels.for_cluster(cluster.name, run, labels.ROLE_WORKER, group=group.name, image=image)
    hostname = "{{.Service.Name}}-{{.Task.Slot}}"
    container = _container(cluster, run, image, worker_args(cluster, group), hostname, own, secret)
    return _service(
        cluster, name, container, group.resources, group.networks, network_ids,
        cluster.group_hosts(group), group.count, "any", own,
    )  # fmt: skip


def probe_service(
    cluster: Cluster, run: str, image: str, targets: list[str], network_id: str
) -> dict[str, Any]:
    """A one-shot task on a network the master is not on, trying the master's addresses; it
    runs once (no restart) on any of the cluster's hosts."""
    name = f"{cluster.name}-probe-{run}"
    own = labels.for_cluster(cluster.name, run, labels.ROLE_PROBE)
    args = ["probe", *targets, "--timeout", "3"]
    container = _container(cluster, run, image, args, name, own, None)
    return _service(
        cluster, name, container, cluster.master.resources, ["probe"], {"probe": network_id},
        cluster.hosts, 1, "none", own,
    )  # fmt: skip
