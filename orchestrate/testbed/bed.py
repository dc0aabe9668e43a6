"""``testbed up``, ``down`` and ``status``: the steps, in order, over the engine and the
state directory.

``up --hosts N`` is idempotent: it changes only what differs from N running machines made of
the current inputs, and says what it changed (or that nothing did). A different N adds
machines, or removes the highest-numbered ones with their volumes (tb-1, the manager, always
stays): a removed machine that was a swarm node is gone from under the swarm, so shrink a
provisioned test bed after ``orchestrate hosts leave``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distproc.text import plural

from ..events import Events
from . import hostsfile
from .engine import HOST_CONFIG_FIELDS, MACHINE_OPTIONS, BedEngine, Payload
from .files import BedFiles, write
from .image import ensure_image, remove_images
from .keys import KeyPair, known_hosts_text, real_ssh, ssh_config_text, ssh_wrapper_text
from .plan import (
    READY_TIMEOUT,
    Actions,
    Machine,
    daemon_json,
    index_of,
    inputs_hash,
    machine,
    machines,
    reconcile,
)
from .ssh import ssh_version

CLIENT_KEY_COMMENT = "distproc-testbed"
HOST_KEY_PATH = "/etc/ssh/ssh_host_ed25519_key"


@dataclass
class UpResult:
    machines: list[Machine]
    actions: Actions
    image_built: bool = False
    network_created: bool = False
    files_changed: list[Path] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    ready_seconds: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(
            self.image_built or self.network_created or self.files_changed or not self.actions.empty
        )


def payload(client_key: KeyPair, host_key: KeyPair) -> Payload:
    """What a machine gets before it starts: its host key, root's authorized key, and its
    engine's daemon.json."""
    return {
        HOST_KEY_PATH: (host_key.private, 0o600),
        HOST_KEY_PATH + ".pub": ((host_key.public + "\n").encode(), 0o644),
        "/root/.ssh/authorized_keys": ((client_key.public + "\n").encode(), 0o600),
        "/etc/docker/daemon.json": (daemon_json(), 0o644),
    }


def machine_inputs(image_id: str, m: Machine, files: Payload) -> str:
    """What machine ``m`` is made of, as its ``io.distproc.inputs`` label."""
    delivered = [f"{p}:{oct(mode)}:".encode() + content for p, (content, mode) in files.items()]
    return inputs_hash(
        image_id,
        str(m.address),
        repr(sorted({**MACHINE_OPTIONS, **HOST_CONFIG_FIELDS}.items())),
        *delivered,
    )


def up(
    n: int,
    events: Events,
    engine: BedEngine | None = None,
    files: BedFiles | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> UpResult:
    """Bring the test bed to ``n`` running machines, write its files, wait until each
    machine's engine answers over ssh."""
    t0 = time.monotonic()
    wanted = machines(n)
    engine = engine or BedEngine()
    files = files or BedFiles.default()
    engine.check_free(wanted)
    image_id, built = ensure_image(engine.client, events)

    files.ensure_root()
    client_key, _ = files.keypair(files.key, CLIENT_KEY_COMMENT)
    host_keys = {m.name: files.keypair(files.host_key(m.name), f"root@{m.name}")[0] for m in wanted}
    payloads = {m.name: payload(client_key, host_keys[m.name]) for m in wanted}
    inputs = {m.name: machine_inputs(image_id, m, payloads[m.name]) for m in wanted}
    actions = reconcile(inputs, engine.existing())
    result = UpResult(wanted, actions, image_built=built)
    result.network_created = engine.ensure_network()

    by_name = {m.name: m for m in wanted}
    if actions.remove:
        events.step(f"removing {', '.join(actions.remove)} (--hosts {n})")
    for name in actions.remove:
        engine.remove_machine(name, volume=True)
        files.forget(name)
    todo = [*actions.recreate, *actions.create]
    if todo:
        events.step(f"creating {', '.join(todo)}")
    for name in actions.recreate:
        engine.remove_machine(name, volume=False)  # its images stay on its volume
    started: dict[str, float] = {}
    for name in todo:
        engine.create(by_name[name], image_id, inputs[name], payloads[name])
        started[name] = time.monotonic()
        events.info(f"{name}: {by_name[name].address} (created)")
    for name in actions.start:
        events.info(f"{name}: starting it again (it was stopped)")
        engine.start(name)
        started[name] = time.monotonic()

    result.files_changed = write_files(files, wanted, client_key, host_keys, events)
    wait_ready(engine, files, wanted, events, ready_timeout, result, started)
    result.elapsed = time.monotonic() - t0
    return result


def write_files(
    files: BedFiles,
    wanted: list[Machine],
    client_key: KeyPair,
    host_keys: dict[str, KeyPair],
    events: Events,
) -> list[Path]:
    """hosts.yaml, known_hosts, ssh_config and bin/ssh; the ones whose content changed."""
    ssh = real_ssh(files.bin)
    if ssh is None:
        events.warn(
            "no OpenSSH client (ssh) on this host: ssh_config and bin/ssh need one "
            "(apt-get install openssh-client); orchestrate itself uses paramiko"
        )
    texts = {
        files.hosts: (hostsfile.render(wanted), 0o644),
        files.known_hosts: (known_hosts_text((m, host_keys[m.name]) for m in wanted), 0o644),
        files.ssh_config: (ssh_config_text(wanted, files.key, files.known_hosts), 0o644),
        files.bin / "ssh": (ssh_wrapper_text(ssh or "/usr/bin/ssh", files.ssh_config), 0o755),
    }
    return [path for path, (text, mode) in texts.items() if write(path, text.encode(), mode)]


def wait_ready(
    engine: BedEngine,
    files: BedFiles,
    wanted: list[Machine],
    events: Events,
    timeout: float,
    result: UpResult,
    started: dict[str, float],
) -> None:
    """Each machine's engine answers (probed inside it), then answers over ssh with the
    test bed's key and known_hosts. Bounded: ``timeout`` per machine, from now. How long
    the engine of a machine started now took, from its start, goes in ``ready_seconds``."""
    events.progress("machines", 0, len(wanted), "machines ready")
    for done, m in enumerate(wanted, 1):
        deadline = time.monotonic() + timeout
        engine.wait_inner(m.name, deadline)
        if m.name in started:
            result.ready_seconds[m.name] = time.monotonic() - started[m.name]
        result.versions[m.name] = ssh_version(files, m, deadline)
        events.progress("machines", done, len(wanted), "machines ready")


@dataclass
class DownResult:
    counts: dict[str, int]
    files: list[Path]
    images: list[str]
    leftovers: list[str]

    @property
    def removed(self) -> int:
        return sum(self.counts.values()) + len(self.files) + len(self.images)


def down(
    events: Events,
    engine: BedEngine | None = None,
    files: BedFiles | None = None,
    images: bool = False,
) -> DownResult:
    """Remove every container, volume and network labelled ``io.distproc.testbed``, and
    the files ``up`` wrote; the machine image too with ``images``."""
    engine = engine or BedEngine()
    files = files or BedFiles.default()
    known = [machine(i) for i in sorted(filter(None, map(index_of, engine.machines())))]
    counts = engine.sweep()
    removed_images = remove_images(engine.client) if images else []
    removed_files = files.remove(known)
    return DownResult(counts, removed_files, removed_images, engine.leftovers())


def status(engine: BedEngine | None = None, files: BedFiles | None = None) -> dict[str, Any]:
    """The machines as the engine has them, each with its inner engine's version (asked
    inside it, bounded), and where the hosts file is: ``testbed status --json``."""
    engine = engine or BedEngine()
    files = files or BedFiles.default()
    found = engine.machines()
    rows = []
    for name in sorted(found, key=lambda n: (index_of(n) or 1 << 30, n)):
        state = found[name]
        i = index_of(name)
        rows.append(
            {
                "name": name,
                "address": state.address,
                "role": machine(i).role if i else "",
                "state": state.state,
                "engine": engine.inner_version(name) if state.running else None,
            }
        )
    return {
        "machines": rows,
        "network": engine.network_exists(),
        "hosts_file": str(files.hosts) if files.hosts.exists() else None,
        "ssh_config": str(files.ssh_config) if files.ssh_config.exists() else None,
    }


def summary(result: UpResult) -> str:
    """One line: what ``up`` did, or that nothing changed."""
    a = result.actions
    parts = []
    if result.image_built:
        parts.append("machine image built")
    for word, names in (
        ("created", a.create),
        ("recreated", a.recreate),
        ("started", a.start),
        ("removed", a.remove),
    ):
        if names:
            parts.append(f"{word} {', '.join(names)}")
    if result.files_changed and not parts:
        parts.append(f"rewrote {plural(len(result.files_changed), 'file')}")
    count = plural(len(result.machines), "machine")
    what = "; ".join(parts) if parts else "nothing changed"
    return f"test bed: {count} ready in {result.elapsed:.1f}s ({what})"
