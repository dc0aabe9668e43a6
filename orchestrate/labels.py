"""Every label name put on a Docker object, in one place.

Objects are found and torn down by these labels, never by name patterns.
"""

from __future__ import annotations

PREFIX = "io.distproc"

#: On every object we create: the value is always "true".
MANAGED = f"{PREFIX}.managed"
#: The cluster's name (containers, networks).
CLUSTER = f"{PREFIX}.cluster"
#: The id of the ``up`` that created the object.
RUN = f"{PREFIX}.run"
#: master, worker, probe, network, secret, journal, image or base-image (the ROLE_* below).
ROLE = f"{PREFIX}.role"
#: A worker's group name.
GROUP = f"{PREFIX}.group"
#: A worker's index in its group.
INDEX = f"{PREFIX}.index"
#: A network's name in cluster.yaml (the Docker name is prefixed with the cluster's).
NETWORK = f"{PREFIX}.network"
#: An image's input hash (what it was built from).
INPUTS = f"{PREFIX}.inputs"
#: The image a container runs (master and workers).
IMAGE = f"{PREFIX}.image"
#: On the master: the image its workers run. A worker joined by hand needs it, and before
#: any worker container exists, the master is the only place to read it from.
WORKER_IMAGE = f"{PREFIX}.worker_image"
#: On containers the e2e tests start by hand (the orchestrator never sets it).
TEST = f"{PREFIX}.test"
#: The master's port, and the host path of the key file it mounts (a path, never the key).
PORT = f"{PREFIX}.port"
AUTHKEY_FILE = f"{PREFIX}.authkey_file"
#: On every object of the multi-host test bed (``orchestrate testbed``): the value is always
#: "true". ``testbed down`` removes exactly what carries it (its cached image stays).
TESTBED = f"{PREFIX}.testbed"
#: A test bed machine's name (its container and its volume): tb-1, tb-2...
MACHINE = f"{PREFIX}.machine"

#: On what a chaos run made (its helper containers, the workers it added): the run's id.
CHAOS = f"{PREFIX}.chaos"

#: On every swarm node distproc provisioned: the host's name in ``hosts:``, which placement
#: constraints name (``node.labels.io.distproc.host == tb-2``).
HOST = f"{PREFIX}.host"

_BY_NAME = {
    n.lower(): v
    for n, v in dict(globals()).items()
    if n.isupper() and isinstance(v, str) and v.startswith(PREFIX + ".")
}

ROLE_MASTER = "master"
ROLE_WORKER = "worker"
ROLE_PROBE = "probe"
ROLE_NETWORK = "network"
ROLE_IMAGE = "image"
ROLE_BASE = "base-image"
ROLE_SECRET = "secret"
#: the master's journal volume (``down`` removes it, ``down --keep-data`` keeps it)
ROLE_JOURNAL = "journal"
ROLE_CHAOS = "chaos-helper"
ROLE_CHAOS_IMAGE = "chaos-image"
ROLE_TESTBED_MACHINE = "testbed-machine"
ROLE_TESTBED_NETWORK = "testbed-network"
ROLE_TESTBED_VOLUME = "testbed-volume"
ROLE_TESTBED_IMAGE = "testbed-image"


def for_cluster(cluster: str, run: str, role: str, **extra: str) -> dict[str, str]:
    """The labels of an object of ``cluster`` created by run ``run``; ``extra`` names the
    constants above in lower case (``group=``, ``port=``...): no other label can be made."""
    labels = {MANAGED: "true", CLUSTER: cluster, RUN: run, ROLE: role}
    labels.update({_BY_NAME[k]: v for k, v in extra.items()})
    return labels


def cluster_filter(cluster: str) -> dict[str, list[str]]:
    """A Docker ``filters`` argument matching every object of ``cluster``."""
    return {"label": [f"{MANAGED}=true", f"{CLUSTER}={cluster}"]}


def for_testbed(role: str, **extra: str) -> dict[str, str]:
    """The labels of a test bed object; ``extra`` as in ``for_cluster`` (``machine=``)."""
    labels = {MANAGED: "true", TESTBED: "true", ROLE: role}
    labels.update({_BY_NAME[k]: v for k, v in extra.items()})
    return labels


def testbed_filter(role: str = "") -> dict[str, list[str]]:
    """A Docker ``filters`` argument matching the test bed's objects (of one ``role``)."""
    wanted = [TESTBED] + ([f"{ROLE}={role}"] if role else [])  # the key, whatever its value
    return {"label": wanted}
