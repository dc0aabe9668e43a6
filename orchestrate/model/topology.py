"""Pydantic models of ``cluster.yaml``: a side-effect-free description of a cluster.

Field-level rules live here (types, ranges, subnet syntax, kind strings); rules that
relate several sections (undeclared networks, overlaps, capacity) are in ``checks``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal, NamedTuple

from distproc.kinds import BUILTIN as BUILTIN_KINDS
from distproc.spec import JobField, check_protocol_kind, job_fields
from pydantic import (
    AfterValidator,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationInfo,
    WithJsonSchema,
    create_model,
    field_validator,
)

from .chaos import DEFAULT_AT as CHAOS_DEFAULT_AT
from .chaos import DEFAULT_RATE, RATE_PATTERN, SCENARIO_NAMES, SCENARIOS
from .chaos import MAX_SECONDS as CHAOS_MAX_SECONDS
from .errors import Path, Problem, format_path
from .fields import DNS_LABEL_PATTERN, MAX_NAME_LEN, DnsLabel, check_label, fail
from .fields import StrictModel as _Model
from .hosts import PLACEMENT_HELP, Backend, Host, Placement, hosts_json_schema

MIB = 1024 * 1024
#: Below this a Python interpreter cannot even start reliably.
MIN_MEMORY = 32 * MIB
#: The kernel's ceiling for pid_max on 64-bit Linux: no pids limit above it means anything.
PID_MAX_LIMIT = 4_194_304
MASTER_SUFFIX = "-master"
_UNITS = {"": 1, "b": 1, "k": 1024, "m": MIB, "g": 1024 * MIB, "t": 1024 * 1024 * MIB}
#: Docker's own units (``256m``, as ``docker run --memory``) or their IEC names (``256MiB``),
#: all binary, no space. ``MB``/``GB`` are refused: they mean 10**6/10**9 to most readers, and
#: Docker would silently read them as binary.
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)(?:([kmgt])(?:ib)?|(b))?$", re.IGNORECASE)
_DECIMAL_UNIT = re.compile(r"^\d+(?:\.\d+)?\s*([kmgt])b$", re.IGNORECASE)
SUBNET_PATTERN = r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$"
MEMORY_PATTERN = r"^\d+(\.\d+)?([kKmMgGtT]([iI][bB])?|[bB])?$"
MEMORY_HELP = (
    "Memory limit: bytes, or a number with Docker's unit b/k/m/g/t ('256m', '1g') or its "
    "IEC name KiB/MiB/GiB/TiB ('1.5GiB'); binary units, no space; >= 32m."
)


MAX_CLUSTER_NAME_LEN = MAX_NAME_LEN - len(MASTER_SUFFIX)


def _check_cluster_name(value: str) -> str:
    check_label(value)
    if len(value) > MAX_CLUSTER_NAME_LEN:
        raise fail(
            f"cluster name {value!r} is {len(value)} characters: at most {MAX_CLUSTER_NAME_LEN} "
            f"so that container name '{value}{MASTER_SUFFIX}' fits in {MAX_NAME_LEN}"
        )
    return value


ClusterName = Annotated[
    str,
    AfterValidator(_check_cluster_name),
    Field(json_schema_extra={"pattern": DNS_LABEL_PATTERN, "maxLength": MAX_CLUSTER_NAME_LEN}),
]


def format_bytes(n: int) -> str:
    """``268435456`` -> ``"256m"`` (Docker's binary units)."""
    for unit in ("t", "g", "m", "k"):
        if n % _UNITS[unit] == 0:
            return f"{n // _UNITS[unit]}{unit}"
    return f"{n}b"


def parse_memory(value: Any) -> int:
    """Parse ``"256m"``, ``"1g"``, ``"1.5GiB"`` or an int of bytes into bytes (binary units).

    One spelling per meaning (see ``_MEMORY``): ``256mb`` and ``256 MB`` are refused with
    the spelling to use, rather than guessed at.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise fail(f"expected a size like '256m' or a number of bytes, got {value!r}")
    if isinstance(value, str):
        match = _MEMORY.match(value)
        if not match:
            raise fail(_memory_hint(value))
        number, unit, _ = match.groups()
        size = int(float(number) * _UNITS[(unit or "").lower()])
    else:
        size = value
    if size < MIN_MEMORY:
        hint = f"; did you mean '{value}m'?" if isinstance(value, int) and value > 0 else ""
        raise fail(
            f"memory {value!r} ({size} bytes) is too small: a Python process needs at least "
            f"{format_bytes(MIN_MEMORY)}{hint}"
        )
    return size


def _memory_hint(value: str) -> str:
    """Why ``value`` is not a size, with the spelling that is."""
    compact = "".join(value.split())
    if (decimal := _DECIMAL_UNIT.match(value.strip())) is not None:
        unit = decimal.group(1).lower()
        number = compact[: -len(unit) - 1]
        return (
            f"{value!r} is ambiguous ({unit.upper()}B is 1000-based to most readers, "
            f"1024-based to Docker): write '{number}{unit}' or '{number}{unit.upper()}iB'"
        )
    if compact != value and _MEMORY.match(compact):
        return f"{value!r} has a space: write {compact!r}"
    return (
        f"{value!r} is not a size: use e.g. '256m', '1g' or '1GiB' "
        "(binary units b/k/m/g/t or KiB/MiB/GiB/TiB)"
    )


Memory = Annotated[
    int,
    PlainValidator(parse_memory),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": MIN_MEMORY},
                {"type": "string", "pattern": MEMORY_PATTERN},
            ]
        }
    ),
]


def parse_concurrency(value: Any) -> Literal["auto"] | int:
    """``"auto"`` or an integer >= 1."""
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise fail(f"must be 'auto' or an integer >= 1, got {value!r}")


Concurrency = Annotated[
    Literal["auto"] | int,
    PlainValidator(parse_concurrency),
    WithJsonSchema({"anyOf": [{"const": "auto"}, {"type": "integer", "minimum": 1}]}),
]


class Resources(_Model):
    """Container limits."""

    cpus: float = Field(1.0, ge=0.01, description="CPU limit in cores, e.g. 0.5 (>= 0.01).")
    memory: Memory = Field("256m", validate_default=True, description=MEMORY_HELP)
    pids: int = Field(
        256,
        ge=16,
        le=PID_MAX_LIMIT,
        description=f"Maximum number of processes/threads (16 to {PID_MAX_LIMIT}).",
    )

    @property
    def nano_cpus(self) -> int:
        """``cpus`` in units of 1e-9 CPUs."""
        return round(self.cpus * 1e9)


class Network(_Model):
    """A user-defined network (one IPv4 subnet)."""

    name: DnsLabel = Field(description="Network name (a DNS label), referenced by nodes.")
    subnet: str = Field(
        description="IPv4 subnet in CIDR form, e.g. 198.18.1.0/24 (use 198.18.0.0/15 for tests).",
        json_schema_extra={"pattern": SUBNET_PATTERN},
    )
    internal: bool = Field(True, description="No route to the outside world (default true).")
    encrypted: bool = Field(
        False,
        description="Encrypt the traffic between hosts (an overlay option: backend swarm "
        "only; IPsec, refused where the kernel lacks ESP). Default false.",
    )

    @field_validator("subnet")
    @classmethod
    def _check_subnet(cls, value: str) -> str:
        if "/" not in value:
            raise fail(f"{value!r} is not a CIDR subnet: write it as a.b.c.d/prefix")
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise fail(f"{value!r} is not a valid IPv4 subnet (expected a.b.c.d/prefix)") from None
        if net.version != 4:
            raise fail(f"{value!r} is IPv6: only IPv4 subnets are supported")
        if ipaddress.ip_address(value.split("/", 1)[0]) != net.network_address:
            raise fail(f"{value!r} has host bits set: the network address would be {net}")
        return str(net)

    @property
    def network(self) -> ipaddress.IPv4Network:
        """The subnet as an ``IPv4Network``."""
        return ipaddress.IPv4Network(self.subnet)

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The first host address, which the engine takes as the gateway."""
        return self.network.network_address + 1

    @property
    def capacity(self) -> int:
        """Addresses left for containers: all minus network, broadcast and gateway."""
        return max(self.network.num_addresses - 3, 0)


class Master(_Model):
    """The queue master (the multiprocessing.managers server)."""

    networks: list[str] = Field(min_length=1, description="Networks the master is attached to.")
    port: int = Field(5000, ge=1, le=65535, description="TCP port the manager listens on.")
    resources: Resources = Field(default_factory=Resources, description="Container limits.")
    placement: Placement | None = Field(
        None, description=PLACEMENT_HELP + " Default: the first manager in hosts."
    )
    journal: bool = Field(
        True,
        description="Keep a journal (sqlite, on a volume of the cluster's) that a restarted "
        "master replays: a running job goes on. false: a master that dies loses its job "
        "(for speed comparisons). `down` removes the journal, `down --keep-data` keeps it.",
    )


class WorkerGroup(_Model):
    """A group of identical workers; containers are named ``<cluster>-<group>-<i>``."""

    name: DnsLabel = Field(description="Group name (a DNS label).")
    count: int = Field(1, ge=0, description="Number of worker containers (>= 0).")
    networks: list[str] = Field(min_length=1, description="Networks the workers are attached to.")
    concurrency: Concurrency = Field(
        "auto", description="Tasks run at once per worker: 'auto' (from cpus) or an int >= 1."
    )
    mode: Literal["auto", "inline", "threads", "processes"] = Field(
        "auto", description="How a worker runs tasks concurrently."
    )
    resources: Resources = Field(default_factory=Resources, description="Container limits.")
    placement: Placement | None = Field(None, description=PLACEMENT_HELP + " Default: any host.")


def _job_field(f: JobField, optional: bool = False) -> tuple[Any, Any]:
    """A pydantic (annotation, FieldInfo) pair for one ``JobSpec`` field: its type (a Literal
    for choices), default, description, bounds and extra rule, all read from the field.
    ``optional``: left out by default (an override: ``JobOverrides``)."""
    annotation: Any = Literal[f.choices] if f.choices else f.type
    if f.option.check is not None:
        annotation = Annotated[annotation, AfterValidator(_as_validation(f.option.check))]
    if f.nullable or optional:  # null (or left out): resolved where the spec is made
        annotation = annotation | None
    extra: dict[str, Any] = dict(_JOB_SCHEMA_EXTRA.get(f.name, {}))
    if f.option.pattern:
        extra["pattern"] = f.option.pattern  # documented, not enforced: check gives the message
    number: dict[str, Any] = {"ge": f.low, "le": f.high}
    if f.type is float:
        number["allow_inf_nan"] = False
    description = f.help[0].upper() + f.help[1:] + "."  # a sentence, as the other fields'
    default = None if optional else f.default
    info = Field(default, description=description, json_schema_extra=extra or None, **number)
    return annotation, info


def _as_validation(check: Callable[[Any], object]) -> Callable[[Any], Any]:
    """A spec rule (raising ValueError) as a validator whose message is shown verbatim."""

    def validate(value: Any) -> Any:
        try:
            check(value)
        except ValueError as exc:
            raise fail(str(exc)) from None
        return value

    return validate


#: Schema decoration only (editors offer these): no rule lives here.
_JOB_SCHEMA_EXTRA: dict[str, dict[str, Any]] = {
    "kind": {"examples": [*BUILTIN_KINDS, "pkg.mod:func"]}
}

#: Every ``JobSpec`` field, derived; ``Job`` adds the cross-field rule and orchestrate-only
#: fields (none yet).
_JobFields: type[_Model] = create_model(
    "_JobFields",
    __base__=_Model,
    __module__=__name__,
    **{f.name: _job_field(f) for f in job_fields()},
)


class Job(_JobFields):
    """The job the master enqueues: the queue program's JobSpec fields, derived from it."""

    def spec(self) -> dict[str, Any]:
        """The job as the queue program's ``submit`` takes it: every JobSpec field."""
        return {f.name: getattr(self, f.name) for f in job_fields()}

    @field_validator("kind")
    @classmethod
    def _check_kind_fits_protocol(cls, value: str, info: ValidationInfo) -> str:
        protocol = info.data.get("protocol")  # absent if it was itself invalid
        if protocol is not None:
            try:
                check_protocol_kind(protocol, value)  # the queue program's own rule
            except ValueError as exc:
                raise fail(str(exc)) from None
        return value


_JobOverrideFields: type[_Model] = create_model(
    "_JobOverrideFields",
    __base__=_Model,
    __module__=__name__,
    **{f.name: _job_field(f, optional=True) for f in job_fields()},
)


class JobOverrides(_JobOverrideFields):
    """Some fields of the job, for one chaos run: the others are the file's ``job``."""

    def given(self) -> dict[str, Any]:
        """The fields written in the file (``size: null`` too: the kind's own default)."""
        return {name: getattr(self, name) for name in sorted(self.model_fields_set)}


ScenarioName = Literal[SCENARIO_NAMES]  # type: ignore[valid-type]


def _check_rate(value: str) -> str:
    if not re.match(RATE_PATTERN, value):
        raise fail(
            f"{value!r} is not a rate: write a whole number of bits per second with tc's unit "
            "bit, kbit, mbit or gbit, no space ('64kbit', '1mbit')"
        )
    return value


Rate = Annotated[
    str, AfterValidator(_check_rate), Field(json_schema_extra={"pattern": RATE_PATTERN})
]


class ChaosEntry(_Model):
    """A chaos scenario `orchestrate chaos` runs: one job, a fault injected while it runs,
    and the verdict (what was lost, how long the cluster took to recover)."""

    scenario: ScenarioName = Field(  # type: ignore[valid-type]
        description="The scenario: "
        + "; ".join(f"'{s.name}': {s.summary}" for s in SCENARIOS.values())
        + "."
    )
    target: str | None = Field(
        None,
        pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
        description="What the fault hits: a worker by its container name, with or without "
        "the cluster's name in front ('alpha-0'); for 'scale', a worker group. Default: the "
        "first worker (the first group).",
    )
    at: float | None = Field(
        None,
        gt=0,
        le=CHAOS_MAX_SECONDS,
        allow_inf_nan=False,
        description=f"Seconds after the job started when the fault is injected (default "
        f"{CHAOS_DEFAULT_AT:g}).",
    )
    for_: float | None = Field(
        None,
        alias="for",
        gt=0,
        le=CHAOS_MAX_SECONDS,
        allow_inf_nan=False,
        description="Seconds the fault lasts before it is healed. Default: past the job's "
        "lease (lease_seconds + 2) for a fault a lease outlives ('pause-worker', "
        "'partition', 'blackhole'), else the scenario's own (3 to 5 s).",
    )
    rate: Rate | None = Field(
        None,
        description=f"slow-link: what the worker may send, in tc's units ('64kbit', "
        f"'1mbit'; default {DEFAULT_RATE}).",
    )
    delay: float | None = Field(
        None,
        ge=0,
        le=60000,
        allow_inf_nan=False,
        description="slow-link: milliseconds added to every packet the worker sends (needs "
        "the netem qdisc: refused where the kernel lacks it).",
    )
    loss: float | None = Field(
        None,
        ge=0,
        le=100,
        allow_inf_nan=False,
        description="slow-link: percent of the packets the worker sends that are dropped "
        "(needs netem).",
    )
    job: JobOverrides | None = Field(
        None,
        description="Job fields for this run (e.g. protocol: classic); the others are the "
        "file's job. Flags of `orchestrate chaos` go over both.",
    )

    @field_validator("rate", "delay", "loss")
    @classmethod
    def _only_for_its_scenario(cls, value: Any, info: ValidationInfo) -> Any:
        scenario = info.data.get("scenario")  # absent if it was itself invalid
        if value is not None and scenario is not None:
            option = str(info.field_name)
            if option not in SCENARIOS[scenario].options:
                takers = [s.name for s in SCENARIOS.values() if option in s.options]
                raise fail(f"{option} is an option of {', '.join(takers)}, not of {scenario}")
        return value


class Images(_Model):
    """Container images."""

    base: str = Field(
        "auto",
        min_length=1,
        pattern=r"^\S+$",
        description="Base image: 'auto' (a slim Python image if available, else a locally "
        "bootstrapped Debian base) or an image reference.",
    )


class Auth(_Model):
    """The manager's authentication key."""

    key_file: str | None = Field(
        None, description="File holding the key; null generates a key per cluster."
    )


class HostPlan(NamedTuple):
    """One host and what may run on it: the master, and the worker groups placed there."""

    host: Host
    master: bool
    groups: tuple[WorkerGroup, ...]


class WorkerSlot(NamedTuple):
    """One worker container: its group, index in the group and container name."""

    group: WorkerGroup
    index: int
    name: str


class Cluster(_Model):
    """A distproc cluster: networks, one master, groups of workers and the job."""

    name: ClusterName = Field(
        description="Cluster name (a DNS label); prefixes every container name."
    )
    backend: Backend = Field(
        "local",
        description="Where the containers run: 'local' (the default: this machine's Docker "
        "engine) or 'swarm' (a Docker Swarm over `hosts`).",
    )
    hosts: list[Host] = Field(
        default_factory=list,
        description="The machines (backend swarm only): a list of hosts, or {file: PATH} to "
        "include a file holding `hosts:` (PATH relative to this file).",
        json_schema_extra=hosts_json_schema,
    )
    networks: list[Network] = Field(min_length=1, description="Networks (IPv4 subnets).")
    master: Master = Field(description="The queue master.")
    workers: list[WorkerGroup] = Field(default_factory=list, description="Worker groups.")
    job: Job = Field(default_factory=Job, description="The job to run.")
    images: Images = Field(default_factory=Images, description="Container images.")
    auth: Auth = Field(default_factory=Auth, description="Manager authentication.")
    chaos: list[ChaosEntry] = Field(
        default_factory=list,
        description="Chaos scenarios: `orchestrate chaos` with no scenario named runs these, "
        "one job each, in order, and prints one verdict table.",
    )
    #: Where the cluster was read from (set by the loader), so that a check made later, with
    #: the engine at hand, can still name ``file:line:col``. Equal for every source: where a
    #: cluster was read from is not part of what it is.
    _source: Any = PrivateAttr(default=None)

    def problem(self, path: Path, message: str) -> Problem:
        """A problem at ``path`` of the file this cluster was read from (no position if it
        was built in code)."""
        if self._source is not None:
            return self._source.problem(path, message)
        where = f"{format_path(path)}: {message}" if path else message
        return Problem("cluster", None, None, where, path)

    @property
    def master_name(self) -> str:
        """Container (and host) name of the master."""
        return f"{self.name}{MASTER_SUFFIX}"

    def container_name(self, group: str, index: int) -> str:
        """Container (and host) name of worker ``index`` of ``group``."""
        return f"{self.name}-{group}-{index}"

    def iter_workers(self) -> Iterator[WorkerSlot]:
        """Every worker container, group by group."""
        for group in self.workers:
            for i in range(group.count):
                yield WorkerSlot(group, i, self.container_name(group.name, i))

    def worker_names(self) -> list[str]:
        """Container names of all workers."""
        return [slot.name for slot in self.iter_workers()]

    @property
    def total_workers(self) -> int:
        """Number of worker containers."""
        return sum(g.count for g in self.workers)

    def groups_off_master_networks(self) -> list[WorkerGroup]:
        """Worker groups (with workers) that share no network with the master: valid, but
        their workers can never connect (``validate`` warns, ``up`` does not wait for them)."""
        master = set(self.master.networks)
        return [g for g in self.workers if g.count and not master & set(g.networks)]

    def network(self, name: str) -> Network:
        """The network called ``name`` (KeyError if undeclared)."""
        for net in self.networks:
            if net.name == name:
                return net
        raise KeyError(name)

    def group(self, name: str) -> WorkerGroup:
        """The worker group called ``name`` (KeyError if absent)."""
        for group in self.workers:
            if group.name == name:
                return group
        raise KeyError(name)

    @property
    def managers(self) -> list[Host]:
        """The hosts with role manager, in file order."""
        return [h for h in self.hosts if h.role == "manager"]

    def host(self, name: str) -> Host:
        """The host called ``name`` (KeyError if absent)."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def placed(self, placement: Placement | None) -> list[Host]:
        """The hosts ``placement`` admits, in file order; every host when there is none."""
        return [h for h in self.hosts if placement is None or placement.admits(h)]

    def master_hosts(self) -> list[Host]:
        """Where the master may run: its placement's hosts, else the first manager. Pinned by
        default, so that where the queue lives (and results cross from) is known before
        ``up``, on the node the swarm is driven from. Empty without hosts."""
        if self.master.placement is not None:
            return self.placed(self.master.placement)
        return self.managers[:1]

    def group_hosts(self, group: str | WorkerGroup) -> list[Host]:
        """Where the workers of ``group`` (or the group called so) may run."""
        if isinstance(group, str):
            group = self.group(group)
        return self.placed(group.placement) if self.hosts else []

    def iter_hosts(self) -> Iterator[HostPlan]:
        """Every host, in file order, with the parts placement allows on it."""
        master = {h.name for h in self.master_hosts()}
        where = [(g, {h.name for h in self.group_hosts(g)}) for g in self.workers]
        for host in self.hosts:
            groups = tuple(g for g, names in where if host.name in names)
            yield HostPlan(host, host.name in master, groups)

    def containers_on(self, network: str) -> list[str]:
        """Names of the containers attached to ``network`` (master first)."""
        names = [self.master_name] if network in self.master.networks else []
        names += [s.name for s in self.iter_workers() if network in s.group.networks]
        return names

    def attached_count(self, network: str) -> int:
        """How many containers are attached to ``network``."""
        master = 1 if network in self.master.networks else 0
        return master + sum(g.count for g in self.workers if network in g.networks)

    def summary(self) -> str:
        """One line, e.g. ``cluster 'x': 2 networks, 1 master, 4 workers in 2 groups``, and
        for swarm ``; swarm on 3 hosts (1 manager: tb-1)``."""
        n, g = len(self.networks), len(self.workers)
        line = (
            f"cluster {self.name!r}: {n} network{'s' * (n != 1)}, 1 master, "
            f"{self.total_workers} worker{'s' * (self.total_workers != 1)} "
            f"in {g} group{'s' * (g != 1)}"
        )
        if self.backend == "local":
            return line
        h, m = len(self.hosts), len(self.managers)
        return (
            f"{line}; {self.backend} on {h} host{'s' * (h != 1)} "
            f"({m} manager{'s' * (m != 1)}: {', '.join(x.name for x in self.managers)})"
        )
