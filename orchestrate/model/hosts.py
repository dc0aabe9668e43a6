"""The machines a cluster runs on (``hosts:``) and where its parts run on them (``placement:``).

Only ``backend: swarm`` uses them. Pure data: nothing here connects to a host. Reading a
hosts file (``hosts: {file: PATH}``) is the loader's job, so that its errors name its lines.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from ..labels import PREFIX as OUR_LABEL_PREFIX
from .fields import DnsLabel, StrictModel, fail

Backend = Literal["local", "swarm"]
Role = Literal["manager", "worker"]

#: The test bed's own addresses, which no cluster network may overlap (``checks``): its LAN
#: (the first /24: the test machines' ssh and swarm traffic) and its inner engines' bridges,
#: address pools and swarm pools (the seven /24s after it). examples/swarm.yaml's overlays sit
#: just above, in 198.18.72.0/21. The test bed and provisioning derive their ranges from this.
TESTBED_RESERVED = ipaddress.IPv4Network("198.18.64.0/21")
TESTBED_LAN, *_POOLS = TESTBED_RESERVED.subnets(new_prefix=24)
#: 198.18.65.0/24 ... 198.18.71.0/24: the inner engines' bip, default-address-pools and
#: swarm --default-addr-pool.
TESTBED_ENGINE_POOLS: tuple[ipaddress.IPv4Network, ...] = tuple(_POOLS)

#: Swarm's ``--default-addr-pool`` when distproc forms a swarm (the ingress network, and any
#: overlay given no subnet), in /24s: inside the reservation, so nothing Swarm allocates
#: leaves 198.18.0.0/15 (198.18.65.0/24-198.18.67.0/24 are the test machines' own engines').
SWARM_ADDRESS_POOL = ipaddress.IPv4Network("198.18.68.0/22")
SWARM_POOL_SUBNET_SIZE = 24
assert SWARM_ADDRESS_POOL.subnet_of(TESTBED_RESERVED)

#: Where ``orchestrate testbed up`` writes its hosts file (with its key and known_hosts),
#: relative to the directory orchestrate runs in; examples/swarm.yaml includes it.
TESTBED_DIR = PurePath(".cluster", "testbed")
TESTBED_HOSTS_FILE = TESTBED_DIR / "hosts.yaml"

#: Validation context key: the directory relative paths of a host are read from (that of the
#: file naming them). Set by the loader; without it, the current directory.
PATH_BASE = "path_base"

MAX_DNS_NAME_LEN = 253
ADDRESS_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$"
_DNS_NAME_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$")
_DOTTED_NUMBERS = re.compile(r"^[0-9.]+$")


def _check_address(value: str) -> str:
    """An IPv4 address or a DNS name: what ssh dials, and what the nodes reach each other at."""
    if ":" in value:
        raise fail(f"{value!r}: IPv6 is not supported; give an IPv4 address or a DNS name")
    if _DOTTED_NUMBERS.match(value):
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError:
            raise fail(f"{value!r} is not a valid IPv4 address") from None
    labels = value.split(".")
    if len(value) > MAX_DNS_NAME_LEN or not all(
        _DNS_NAME_LABEL.match(part) and len(part) <= 63 for part in labels
    ):
        raise fail(
            f"{value!r} is neither an IPv4 address nor a DNS name (letters, digits and '-' in "
            f"dot-separated labels of at most 63 characters, {MAX_DNS_NAME_LEN} in all)"
        )
    return value


Address = Annotated[
    str,
    AfterValidator(_check_address),
    Field(json_schema_extra={"pattern": ADDRESS_PATTERN, "maxLength": MAX_DNS_NAME_LEN}),
]

#: POSIX's portable user names. Checked so that ``user@address`` always parses as meant.
USER_PATTERN = r"^[A-Za-z_][A-Za-z0-9._-]*$"
MAX_USER_LEN = 32
_USER = re.compile(USER_PATTERN)


def _check_user(value: str) -> str:
    if not _USER.match(value) or len(value) > MAX_USER_LEN:
        raise fail(
            f"{value!r} is not a user name: letters, digits, '.', '-' and '_', not starting "
            f"with a digit, '.' or '-', at most {MAX_USER_LEN} characters"
        )
    return value


User = Annotated[
    str,
    AfterValidator(_check_user),
    Field(json_schema_extra={"pattern": USER_PATTERN, "maxLength": MAX_USER_LEN}),
]

#: A node label key as a Swarm constraint accepts it (``node.labels.<key> == value``).
LABEL_KEY_PATTERN = r"^[A-Za-z0-9_]([A-Za-z0-9._-]*[A-Za-z0-9_])?$"
#: A label value: printable ASCII with no space at either end (a constraint trims them).
LABEL_VALUE_PATTERN = r"^[!-~]([ -~]*[!-~])?$"
MAX_LABEL_LEN = 128
_LABEL_KEY = re.compile(LABEL_KEY_PATTERN)
_LABEL_VALUE = re.compile(LABEL_VALUE_PATTERN)


def _check_label_key(value: str) -> str:
    if not _LABEL_KEY.match(value) or len(value) > MAX_LABEL_LEN:
        raise fail(
            f"label key {value!r}: use letters, digits, '.', '-' and '_', starting and ending "
            f"with a letter, digit or '_', at most {MAX_LABEL_LEN} characters"
        )
    if value == OUR_LABEL_PREFIX or value.startswith(OUR_LABEL_PREFIX + "."):
        raise fail(f"label key {value!r}: {OUR_LABEL_PREFIX}.* is reserved for distproc's own")
    return value


def _check_label_value(value: str) -> str:
    if not _LABEL_VALUE.match(value) or len(value) > MAX_LABEL_LEN:
        raise fail(
            f"label value {value!r}: use printable ASCII without spaces at either end, "
            f"1 to {MAX_LABEL_LEN} characters"
        )
    return value


LabelKey = Annotated[
    str,
    AfterValidator(_check_label_key),
    Field(json_schema_extra={"pattern": LABEL_KEY_PATTERN, "maxLength": MAX_LABEL_LEN}),
]
LabelValue = Annotated[
    str,
    AfterValidator(_check_label_value),
    Field(json_schema_extra={"pattern": LABEL_VALUE_PATTERN, "maxLength": MAX_LABEL_LEN}),
]
Labels = Annotated[
    dict[LabelKey, LabelValue],
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": LABEL_KEY_PATTERN, "maxLength": MAX_LABEL_LEN},
            "additionalProperties": {
                "type": "string",
                "pattern": LABEL_VALUE_PATTERN,
                "maxLength": MAX_LABEL_LEN,
            },
        }
    ),
]

LABELS_HELP = (
    "Node labels (string -> string, as Docker node labels; quote 'true' and numbers). "
    "Placement matches values as Swarm does: case-insensitively."
)


def carries(labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    """Whether ``labels`` include every label of ``wanted``. Values compare as Swarm's
    constraints do (``node.labels.k == v`` is case-insensitive); keys exactly."""
    return all(k in labels and labels[k].casefold() == v.casefold() for k, v in wanted.items())


def resolve_path(value: str, base: str | None) -> str:
    """``value`` as an absolute, normalized path: ``~`` expanded, relative to ``base`` (the
    directory of the file naming it), or to the current directory without one."""
    path = os.path.expanduser(value)
    return os.path.normpath(os.path.join(base or os.getcwd(), path))


class Host(StrictModel):
    """A machine reached over ssh; with backend swarm it becomes a Swarm node."""

    name: DnsLabel = Field(description="Host name (a DNS label): what placement names.")
    address: Address = Field(
        description="IPv4 address or DNS name: where ssh connects, and where the other nodes "
        "reach this one (Swarm's advertise address), so one per host."
    )
    user: User = Field(
        "root",
        description="ssh user (default root, as on the test bed; elsewhere any user allowed to "
        "run docker). Not taken from the local environment, so that a file means the same "
        "thing wherever it is read.",
    )
    port: int = Field(22, ge=1, le=65535, description="ssh port (default 22).")
    key_file: str | None = Field(
        None,
        min_length=1,
        description="ssh private key, relative to the file naming this host ('~' expands); "
        "null: ssh's defaults and agent. Read when a host is used, not by validate (which "
        "warns if it is missing).",
    )
    known_hosts: str | None = Field(
        None,
        min_length=1,
        description="known_hosts file the host key is verified against (never trusted "
        "silently), relative to the file naming this host; null: ~/.ssh/known_hosts.",
    )
    role: Role = Field(
        "worker",
        description="Swarm role: 'manager' (the first one inits the swarm and, by default, "
        "runs the master) or 'worker' (the default).",
    )
    labels: Labels = Field(default_factory=dict, description=LABELS_HELP)

    @field_validator("key_file", "known_hosts")
    @classmethod
    def _absolute(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        return resolve_path(value, (info.context or {}).get(PATH_BASE))

    def has_labels(self, wanted: Mapping[str, str]) -> bool:
        """Whether this host carries every label of ``wanted``."""
        return carries(self.labels, wanted)


class HostsFile(StrictModel):
    """The hosts are in another file, which holds `hosts:` (a list of hosts)."""

    file: str = Field(
        min_length=1,
        description="A hosts file, relative to this file, holding `hosts:` (a list of hosts); "
        "paths in it are relative to it. `orchestrate testbed up` writes "
        f"{TESTBED_HOSTS_FILE.as_posix()}.",
    )


def hosts_json_schema(schema: dict[str, Any]) -> None:
    """The published schema of ``hosts``: a list of hosts, or ``{file: PATH}``. The model
    holds the list only: the loader reads the file in."""
    listed = {key: schema.pop(key) for key in ("type", "items") if key in schema}
    include = HostsFile.model_json_schema()
    schema["anyOf"] = [listed, include]


class Placement(StrictModel):
    """Where a part may run: on the hosts named, and (if both are given) with every label."""

    hosts: list[DnsLabel] | None = Field(
        None, min_length=1, description="Names of hosts (from `hosts`); any of them."
    )
    labels: Labels = Field(
        default_factory=dict,
        description="Node labels a host must all carry (values case-insensitive, as Swarm).",
    )

    @model_validator(mode="after")
    def _says_something(self) -> Placement:
        if self.hosts is None and not self.labels:
            raise fail("give hosts, labels or both (leave placement out to run anywhere)")
        return self

    def admits(self, host: Host) -> bool:
        """Whether ``host`` is one this placement allows."""
        return self.allows(host.name, host.labels)

    def allows(self, name: str, labels: Mapping[str, str]) -> bool:
        """Whether a host called ``name`` with ``labels`` is one this placement allows."""
        return (self.hosts is None or name in self.hosts) and carries(labels, self.labels)


PLACEMENT_HELP = (
    "Where to run (backend swarm): {hosts: [names]} and/or {labels: {key: value}}; a host "
    "qualifies if it is named (when hosts is given) and carries every label."
)
