"""``hosts.yaml``: the test machines, in the format ``cluster.yaml``'s ``hosts: {file: ...}``
includes (the model reads it; this module only writes it).

Written as text rather than dumped, for its comments; ``tests/unit/test_testbed.py`` reads
it back with a YAML parser. The key and known_hosts paths are relative to the file, so the
state directory can move.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from .plan import SSH_USER, Machine

HEADER = "# written by `orchestrate testbed up`: the test machines, for `hosts: {file: ...}`"
KEY_FILE = "id_ed25519"
KNOWN_HOSTS = "known_hosts"
#: The labels every test machine carries (``placement`` may select them).
LABEL_TESTBED = "testbed"
LABEL_MACHINE = "machine"


def host_labels(m: Machine) -> dict[str, str]:
    return {LABEL_TESTBED: "true", LABEL_MACHINE: m.name}


def render(machines: Iterable[Machine]) -> str:
    """The hosts file's text: one entry per machine, in order (the manager first)."""
    lines = [HEADER, "hosts:"]
    for m in machines:
        # "true" quoted (a string, not YAML's boolean); tb-1 is a plain string already
        labels = ", ".join(f"{k}: {_scalar(v)}" for k, v in host_labels(m).items())
        lines += [
            f"  - name: {m.name}",
            f"    address: {m.address}",
            f"    user: {SSH_USER}",
            f"    key_file: {KEY_FILE}        # relative to this file",
            f"    known_hosts: {KNOWN_HOSTS}    # relative to this file",
            f"    role: {m.role}",
            f"    labels: {{{labels}}}",
        ]
    return "\n".join(lines) + "\n"


def _scalar(value: str) -> str:
    plain = value.replace("-", "").replace("_", "").isalnum() and value.lower() not in _YAML_WORDS
    return value if plain and not value[0].isdigit() else json.dumps(value)


#: Plain words YAML 1.1 (PyYAML) would not read as strings.
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}
