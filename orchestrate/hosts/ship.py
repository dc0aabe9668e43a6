"""Images to the hosts without a registry: ``docker save`` here, ``docker load`` there, over ssh.

An image goes by its id (``sha256:...``), which ``docker load`` keeps: the services name that
id, so a node never resolves a tag and never asks a registry. The tar streams from this
machine's engine into ``docker load`` on the host (no temporary file), with progress in MiB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import remote
from ..backends.base import EngineError
from ..model import Host

if TYPE_CHECKING:
    from .provision import Hosts

MIB = 1024 * 1024
CHUNK = 1024 * 1024


def ship_images(hosts: Hosts, host: Host, image_ids: list[str], events: object = None) -> None:
    """Load ``image_ids`` from this machine's engine into ``host``'s."""
    from ..backends.docker_local import connect_engine

    local = connect_engine()
    for image_id in image_ids:
        size = int(local.images.get(image_id).attrs.get("Size") or 0)
        _ship_one(local, host, image_id, size, events)
        if hosts.engine(host).images.get(image_id).id != image_id:
            raise EngineError(f"{host.name}: `docker load` did not give image {image_id[:19]}")


def _ship_one(local: object, host: Host, image_id: str, size: int, events: object) -> None:
    client = remote.ssh_client(host)
    try:
        channel = client.get_transport().open_session()  # type: ignore[union-attr]
        channel.exec_command("docker load --quiet")
        sent, shown = 0, -1
        # the tar is a little larger than the image's size: progress in tenths of that size,
        # so that a plain log (CI) gets about ten lines, not one per MiB
        total = max(size // MIB, 1)
        stream = local.api.get_image(image_id, chunk_size=CHUNK)  # type: ignore[attr-defined]
        for chunk in stream:
            channel.sendall(chunk)
            sent += len(chunk)
            tenth = min(10, 10 * sent // MIB // total)
            if events is not None and tenth != shown:
                shown = tenth
                events.progress(  # type: ignore[attr-defined]
                    f"ship-{host.name}", total * tenth // 10, total,
                    f"MiB of {image_id[7:19]} to {host.name}",
                )  # fmt: skip
        channel.shutdown_write()
        out = channel.makefile("rb").read().decode(errors="replace")
        err = channel.makefile_stderr("rb").read().decode(errors="replace")
        code = channel.recv_exit_status()
    finally:
        client.close()
    if code != 0:
        raise EngineError(f"{host.name}: docker load failed (exit {code}): {(err or out).strip()}")
