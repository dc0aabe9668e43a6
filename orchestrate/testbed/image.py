"""The test machines' image: Debian bookworm debootstrapped offline (like the distproc base)
with sshd and a Docker engine, imported as ``distproc-testbed:<hash>``.

The tag is a digest of every input (suite, package list, the files written into it, what is
removed, the import changes), so a second ``testbed up`` finds it and builds nothing; the
image stays after ``testbed down`` (``--images`` removes it). Built from scratch it takes
60-80 s here (debootstrap of 133 packages, most of it; packing and ``docker import`` of the
~360 MB root, a few seconds): a cold ``testbed up --hosts 3`` took 66 s, a warm one 2.5 s.

No ssh host key is in the image: debootstrap's openssh-server generates some, and they are
removed, or every machine would share them; each machine gets its own at creation.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import docker
import docker.errors

from .. import labels
from ..backends.docker_images import IMAGES_DIR, SUITE, Bootstrap, bootstrap_image
from ..events import Events

REPO = "distproc-testbed"
MACHINE_DIR = IMAGES_DIR / "testbed"
#: What a machine needs: sshd, a Docker engine (docker.io brings containerd, runc, tini and
#: the docker CLI, which `docker system dial-stdio` over ssh needs), iptables for its
#: bridges, iproute2 and procps to look inside.
INCLUDE = ("openssh-server", "docker.io", "iptables", "iproute2", "procps")
START = "/usr/local/sbin/testbed-start"
#: file in images/testbed -> (path in the image, mode)
FILES = {
    "start.sh": (START, 0o755),
    "sshd_config": ("/etc/ssh/sshd_config.d/distproc-testbed.conf", 0o644),
}
REMOVE = ("var/cache/apt/archives", "var/lib/apt/lists", "etc/ssh/ssh_host_*")
PACKAGES_HINT = 135  # bookworm, measured: the first total of the progress bar


def _files(root: Path = MACHINE_DIR) -> dict[str, tuple[bytes, int]]:
    return {target: ((root / name).read_bytes(), mode) for name, (target, mode) in FILES.items()}


def _changes() -> tuple[str, ...]:
    return (f'ENTRYPOINT ["/usr/bin/tini", "--", "{START}"]',)


def input_hash(root: Path = MACHINE_DIR) -> str:
    """A digest of everything the image is made of."""
    doc = {
        "suite": SUITE,
        "include": INCLUDE,
        "remove": REMOVE,
        "changes": _changes(),
        "files": {
            t: [hashlib.sha256(c).hexdigest(), m] for t, (c, m) in sorted(_files(root).items())
        },
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def recipe(root: Path = MACHINE_DIR) -> Bootstrap:
    """What ``bootstrap_image`` makes: the tag names the input hash, and so does a label."""
    digest = input_hash(root)
    image_labels = labels.for_testbed(labels.ROLE_TESTBED_IMAGE, inputs=digest)
    label_line = "LABEL " + " ".join(f"{k}={v}" for k, v in sorted(image_labels.items()))
    return Bootstrap(
        ref=f"{REPO}:{digest}",
        include=INCLUDE,
        changes=(*_changes(), label_line),
        files=_files(root),
        remove=REMOVE,
        packages_hint=PACKAGES_HINT,
    )


def ensure_image(client: docker.DockerClient, events: Events) -> tuple[str, bool]:
    """The machine image's id, bootstrapped only if no image has its input hash;
    (id, built)."""
    spec = recipe()
    try:
        image = client.images.get(spec.ref)
        events.info(f"machine image {spec.ref} is up to date (cached)")
        return image.id, False
    except docker.errors.ImageNotFound:
        pass
    events.step(
        f"bootstrapping the machine image {spec.ref} with debootstrap (once, about a "
        "minute; needs root and Debian's package mirror)"
    )
    image_id = bootstrap_image(client, spec, events)
    events.info(f"{spec.ref} is ready; later runs reuse it")
    return image_id, True


def remove_images(client: docker.DockerClient) -> list[str]:
    """Every machine image (``testbed down --images``); their tags."""
    removed = []
    flt = labels.testbed_filter(labels.ROLE_TESTBED_IMAGE)
    for image in client.images.list(filters=flt):
        client.images.remove(image.id, force=True)
        removed += image.tags or [image.short_id]
    return removed
