"""The topology model: a side-effect-free description of a cluster. No Docker here."""

from .checks import Issue, topology_problems, topology_warnings
from .errors import ConfigError, OrchestrateError, Problem, format_path
from .hosts import (
    SWARM_ADDRESS_POOL,
    SWARM_POOL_SUBNET_SIZE,
    TESTBED_ENGINE_POOLS,
    TESTBED_HOSTS_FILE,
    TESTBED_LAN,
    TESTBED_RESERVED,
    Host,
    HostsFile,
    Placement,
)
from .loader import load_cluster, load_cluster_text
from .schema import SCHEMA_FILE, cluster_json_schema, cluster_json_schema_text
from .topology import (
    Auth,
    ChaosEntry,
    Cluster,
    HostPlan,
    Images,
    Job,
    Master,
    Network,
    Resources,
    WorkerGroup,
    WorkerSlot,
    format_bytes,
    parse_memory,
)

__all__ = [
    "SCHEMA_FILE",
    "SWARM_ADDRESS_POOL",
    "SWARM_POOL_SUBNET_SIZE",
    "TESTBED_ENGINE_POOLS",
    "TESTBED_HOSTS_FILE",
    "TESTBED_LAN",
    "TESTBED_RESERVED",
    "Auth",
    "ChaosEntry",
    "Cluster",
    "ConfigError",
    "Host",
    "HostPlan",
    "HostsFile",
    "Images",
    "Issue",
    "Job",
    "Master",
    "Network",
    "OrchestrateError",
    "Placement",
    "Problem",
    "Resources",
    "WorkerGroup",
    "WorkerSlot",
    "cluster_json_schema",
    "cluster_json_schema_text",
    "format_bytes",
    "format_path",
    "load_cluster",
    "load_cluster_text",
    "parse_memory",
    "topology_problems",
    "topology_warnings",
]
