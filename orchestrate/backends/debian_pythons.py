"""The queue program on other Pythons: Debian suites bootstrapped like the image's own base.

The image runs Debian bookworm's Python 3.11. Workers (and masters) on newer Pythons must
interoperate with it: 3.12 changed the authentication handshake of
``multiprocessing.connection`` (``{sha256}``-prefixed digests, CPython gh-61460), and 3.14
made forkserver the default start method on Linux (gh-84559), which the worker's process
pools then use. So the same program is built on Debian trixie (python3 3.13) and testing
(python3 3.14: 3.14.7-3 when this was written), and the e2e tests
(``tests/e2e/test_python_versions.py``) join those workers to a 3.11 master.

A base is bootstrapped once per machine (``base_recipe``: its tag names a digest of its
recipe) and the program on it is ``distproc:<input hash>`` like the main image
(``build_image``). Cold, bootstrap, import and build took 48-65 s for trixie and 56-57 s for
testing here (about 95 packages each, two runs); found, under a second for both. If a
suite's ``python3`` moved on to another Python, its bootstrap is refused with the version it
found (``check_python``), never imported under a wrong name.
"""

from __future__ import annotations

import docker
import docker.errors

from ..events import Events
from .docker_images import (
    LOCAL_BASE,
    SUITE,
    SUITE_PYTHON,
    base_recipe,
    bootstrap_base,
    bootstrap_image,
    build_image,
)

#: major.minor -> the Debian suite whose default python3 it is: the image's own, then newer.
SUITES = {SUITE_PYTHON: SUITE, "3.13": "trixie", "3.14": "testing"}
NEWER = tuple(p for p in SUITES if p != SUITE_PYTHON)


def suite_of(python: str) -> str:
    try:
        return SUITES[python]
    except KeyError:
        raise ValueError(
            f"no Debian suite for Python {python!r}: one of {sorted(SUITES)}"
        ) from None


def ensure_base(client: docker.DockerClient, python: str, events: Events) -> str:
    """The base image for ``python``, bootstrapped only if no image has its tag."""
    spec = base_recipe(suite_of(python), python)
    try:
        client.images.get(spec.ref)
        events.info(f"base {spec.ref} (Python {python}) is up to date (cached)")
        return spec.ref
    except docker.errors.ImageNotFound:
        pass
    if spec.ref == LOCAL_BASE:
        bootstrap_base(client, events)
        return spec.ref
    events.step(
        f"bootstrapping {spec.ref} (Debian {spec.suite}, Python {python}) with debootstrap "
        "(once, about a minute; needs root and Debian's package mirror)"
    )
    bootstrap_image(client, spec, events)
    events.info(f"{spec.ref} is ready; later runs reuse it")
    return spec.ref


def image_for(client: docker.DockerClient, python: str, events: Events) -> str:
    """The distproc image (the queue program, as in the main image) on ``python``."""
    return build_image(client, ensure_base(client, python, events), events)
