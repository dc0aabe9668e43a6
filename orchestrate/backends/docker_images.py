"""Images on the local engine: the base, and the distproc image built on it.

The distproc image is tagged by a hash of everything it is built from (the Dockerfile, the
queue program, the shipped kinds and the base image's id), so nothing is rebuilt when nothing
changed. Builds never pull (``pull=False``). The base is ``images.base``; ``auto`` takes a
slim Python image that is present (or can be pulled), else bootstraps a Debian base once with
debootstrap and ``docker import``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from .. import labels
from ..events import Events
from ..model import OrchestrateError

IMAGES_DIR = Path(__file__).resolve().parents[2] / "images"
BUILD_INPUTS = ("Dockerfile", "distproc", "distproc_kinds", "tutorial_worker.py")
IMAGE_REPO = "distproc"
SLIM_CANDIDATES = ("python:3.12-slim", "python:3.13-slim", "python:3.11-slim", "python:3-slim")
PULL_DEFAULT = "python:3.12-slim"
LOCAL_BASE = "distproc-base:bookworm"
SUITE = "bookworm"
#: The Python of bookworm's python3 package: the image's own.
SUITE_PYTHON = "3.11"
#: debootstrap is stopped after this long (a mirror that stalls must not hang CI). Measured
#: here, cold: 60-80 s for bookworm with python3 (100 packages) or with the test bed's 135;
#: 48-65 s for trixie or testing with python3, import and build included.
BOOTSTRAP_TIMEOUT = 900.0


class ImageError(OrchestrateError):
    """An image could not be found, pulled, bootstrapped or built."""


def _files(root: Path) -> list[Path]:
    out = []
    for name in BUILD_INPUTS:
        p = root / name
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out += [
                f
                for f in p.rglob("*")
                if f.is_file() and "__pycache__" not in f.parts and f.suffix not in (".pyc", ".pyo")
            ]
    return sorted(out)


def input_hash(base_id: str, root: Path = IMAGES_DIR) -> str:
    """A digest of the image's inputs: the same inputs give the same tag."""
    h = hashlib.sha256(base_id.encode())
    for f in _files(root):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _exists(client: docker.DockerClient, ref: str) -> docker.models.images.Image | None:
    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def _pull_allowed() -> bool:
    return os.environ.get("DISTPROC_PULL", "auto") != "never"


def _try_pull(client: docker.DockerClient, ref: str, events: Events) -> bool:
    if not _pull_allowed():
        return False
    events.info(f"pulling {ref}")
    try:
        client.images.pull(ref)
        return True
    except docker.errors.APIError as exc:
        events.warn(f"cannot pull {ref} (no registry access?): {exc.explanation or exc}")
        return False


def resolve_base(client: docker.DockerClient, setting: str, events: Events) -> str:
    """The base image reference for ``images.base``."""
    if setting != "auto":
        if _exists(client, setting) or _try_pull(client, setting, events):
            return setting
        raise ImageError(
            f"base image {setting!r} is not on this engine and cannot be pulled; "
            "use images.base: auto to bootstrap a local Debian base"
        )
    for ref in SLIM_CANDIDATES:
        if _exists(client, ref):
            return ref
    if _exists(client, LOCAL_BASE):
        return LOCAL_BASE
    if _try_pull(client, PULL_DEFAULT, events):
        return PULL_DEFAULT
    bootstrap_base(client, events)
    return LOCAL_BASE


@dataclass(frozen=True)
class Bootstrap:
    """An image made offline: ``debootstrap --variant=minbase --include=...`` into a
    directory, ``files`` written into it, ``remove`` (globs) taken out, then ``docker import``
    with ``changes`` (Dockerfile instructions: LABEL, CMD, ENTRYPOINT)."""

    ref: str
    include: tuple[str, ...]
    changes: tuple[str, ...]
    #: path in the root file system -> (content, mode)
    files: Mapping[str, tuple[bytes, int]] = field(default_factory=dict)
    remove: tuple[str, ...] = ("var/cache/apt/archives", "var/lib/apt/lists")
    suite: str = SUITE
    #: about how many packages debootstrap installs: the progress bar's first total
    packages_hint: int = 0
    #: major.minor the suite's ``python3`` package must be ("" checks nothing): a suite
    #: that moved on to another Python is refused, not imported under a wrong name
    python: str = ""
    timeout: float = BOOTSTRAP_TIMEOUT

    def command(self, root: Path) -> list[str]:
        include = [f"--include={','.join(self.include)}"] if self.include else []
        return ["debootstrap", "--variant=minbase", *include, self.suite, str(root)]


#: One line per package and phase; Extracting (the required packages only, before they are
#: unpacked again) is not counted, and not shown either.
_PACKAGE_LINE = re.compile(r"^I: (Retrieving|Validating|Extracting|Unpacking|Configuring) \S")
_PACKAGE_PHASES = ("Retrieving", "Validating", "Unpacking", "Configuring")


def installed_version(root: Path, package: str) -> str | None:
    """The version of ``package`` installed in the root file system ``root`` (from dpkg's
    status file; nothing runs inside it), or None if it is not installed."""
    try:
        text = (root / "var/lib/dpkg/status").read_text(errors="replace")
    except OSError:
        return None
    for stanza in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " "
        )
        if fields.get("Package") == package and fields.get("Status", "").endswith(" installed"):
            return fields.get("Version")
    return None


def check_python(root: Path, spec: Bootstrap) -> None:
    """ImageError unless the root's ``python3`` is the ``spec.python`` it promises."""
    if not spec.python:
        return
    version = installed_version(root, "python3")
    if version is None:
        raise ImageError(f"debootstrap of {spec.suite} installed no python3 package")
    if not re.match(rf"^(\d+:)?{re.escape(spec.python)}(\.|$)", version):
        raise ImageError(
            f"Debian {spec.suite}'s python3 is now {version}, not {spec.python}: "
            f"{spec.ref} would run another Python than it is meant to (update the suite "
            "of that Python in orchestrate/backends/debian_pythons.py)"
        )


def run_bounded(
    argv: list[str], timeout: float, on_line: Callable[[str], None], tail: int = 20
) -> None:
    """Run ``argv``, each output line to ``on_line``; ImageError with its last ``tail``
    lines if it fails or outlives ``timeout``. Then its whole process group gets SIGTERM
    (debootstrap unmounts what it mounted on SIGTERM; its wget or dpkg, which hold the
    output pipe open, stop too), and SIGKILL 30 s later."""
    last: deque[str] = deque(maxlen=tail)
    with subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    ) as proc:
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            _stop_group(proc)

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip()
                last.append(line)
                on_line(line)
        except BaseException:  # Ctrl-C: its own session does not get the terminal's SIGINT
            _stop_group(proc)
            raise
        finally:
            timer.cancel()
            proc.wait()
    what = Path(argv[0]).name
    if expired.is_set():
        raise ImageError(
            f"{what} did not finish in {timeout:.0f}s (stopped); its last lines:\n"
            + "\n".join(last)
        )
    if proc.returncode != 0:
        raise ImageError(
            f"{what} failed (exit {proc.returncode}); its last lines:\n" + "\n".join(last)
        )


def _stop_group(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM to ``proc``'s process group, SIGKILL if it still runs ``grace`` s later."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def mounts_under(root: Path, mounts: Path = Path("/proc/self/mounts")) -> list[Path]:
    """Mount points at or below ``root``, deepest first (what to unmount, in order)."""
    found = []
    for line in mounts.read_text().splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        point = Path(fields[1].replace("\\040", " "))
        if point == root or root in point.parents:
            found.append(point)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _unmount_under(root: Path) -> None:
    """What a killed debootstrap left mounted in ``root`` (its /proc, /sys, /dev/pts), so
    that removing the directory never walks into the host's."""
    for point in mounts_under(root.resolve()):
        subprocess.run(["umount", "--lazy", str(point)], check=False)
    left = mounts_under(root.resolve())
    if left:
        raise ImageError(f"cannot unmount {', '.join(map(str, left))}: remove it by hand")


class DebootstrapProgress:
    """Progress through debootstrap's output: each package is retrieved, validated, unpacked
    and configured, one ``I: <Phase> <package>`` line each. How many packages there are is
    known only once retrieval ends; until then the total is ``hint`` (or what was retrieved
    so far, if more)."""

    def __init__(self, hint: int = 0) -> None:
        self.hint = hint
        self.counts = dict.fromkeys(_PACKAGE_PHASES, 0)

    def feed(self, line: str) -> bool:
        """Count ``line``; True if it was one package's step (not worth a line by itself)."""
        m = _PACKAGE_LINE.match(line)
        if m is None:
            return False
        if m.group(1) in self.counts:
            self.counts[m.group(1)] += 1
        return True

    @property
    def packages(self) -> int:
        """How many packages: the hint (or more) until unpacking starts, then exact (every
        package is retrieved and validated, one by one, before any is unpacked)."""
        seen = self.counts["Retrieving"]
        return max(seen, self.hint) if self.counts["Unpacking"] == 0 else max(seen, 1)

    @property
    def done(self) -> int:
        return min(sum(self.counts.values()), self.total)

    @property
    def total(self) -> int:
        return len(_PACKAGE_PHASES) * max(self.packages, 1)


BASE_PACKAGES_HINT = 100  # python3 on minbase: about 100 packages (bookworm, trixie, testing)


def base_recipe(suite: str = SUITE, python: str = SUITE_PYTHON) -> Bootstrap:
    """A Python base: minbase with ``python3``, which must be ``python`` (major.minor).
    bookworm's is ``LOCAL_BASE``, the name ``images.base: auto`` finds; another suite's tag
    names a digest of its recipe (``distproc-base:trixie-<hash>``), so a changed recipe is
    bootstrapped anew rather than taken for the old one."""
    changes = (f"LABEL {labels.MANAGED}=true {labels.ROLE}={labels.ROLE_BASE}", 'CMD ["python3"]')
    include = ("python3",)
    doc = {"suite": suite, "python": python, "include": include, "changes": changes}
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
    repo = LOCAL_BASE.split(":")[0]
    return Bootstrap(
        ref=LOCAL_BASE if suite == SUITE else f"{repo}:{suite}-{digest}",
        include=include,
        changes=changes,
        suite=suite,
        packages_hint=BASE_PACKAGES_HINT,
        python=python,
    )


def bootstrap_base(client: docker.DockerClient, events: Events) -> None:
    """Make ``distproc-base:bookworm`` offline-friendly: debootstrap + ``docker import``."""
    events.step(
        f"no Python base image and no registry: bootstrapping {LOCAL_BASE} with debootstrap "
        "(once, about a minute; needs root and Debian's package mirror)"
    )
    bootstrap_image(client, base_recipe(), events)
    events.info(f"{LOCAL_BASE} is ready; later runs reuse it")


def bootstrap_image(client: docker.DockerClient, spec: Bootstrap, events: Events) -> str:
    """Debootstrap ``spec`` and import it as ``spec.ref``; the new image's id. Progress by
    package; on failure the last lines of debootstrap's output are in the error."""
    if os.geteuid() != 0:
        raise ImageError(
            f"bootstrapping {spec.ref} needs root (debootstrap). Run `make cluster-up` as "
            "root once, or pull a slim Python image (docker pull python:3.12-slim), or set "
            "images.base in cluster.yaml"
        )
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed: apt-get install -y debootstrap")
    tmp = Path(tempfile.mkdtemp(prefix="distproc-bootstrap-"))
    try:
        _bootstrap_in(tmp, client, spec, events)
    finally:
        if not mounts_under(tmp.resolve()):  # else left in place: never delete through them
            shutil.rmtree(tmp, ignore_errors=True)
    image = _exists(client, spec.ref)
    if image is None:
        raise ImageError(f"importing {spec.ref} produced no image")
    return image.id


def _bootstrap_in(tmp: Path, client: docker.DockerClient, spec: Bootstrap, events: Events) -> None:
    """``bootstrap_image``'s work, in the scratch directory ``tmp``."""
    root = Path(tmp) / "root"
    progress = DebootstrapProgress(spec.packages_hint)

    def on_line(line: str) -> None:
        if progress.feed(line):
            events.progress("debootstrap", progress.done, progress.total, "debootstrap")
        else:
            events.detail(line)

    try:
        run_bounded(spec.command(root), spec.timeout, on_line)
    finally:
        _unmount_under(root)
    events.progress("debootstrap", progress.total, progress.total, "debootstrap")
    check_python(root, spec)
    for pattern in spec.remove:
        for junk in root.glob(pattern):
            if junk.is_dir() and not junk.is_symlink():
                shutil.rmtree(junk)
            else:
                junk.unlink()
    for name, (content, mode) in spec.files.items():
        target = root / name.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)
    archive = Path(tmp) / "rootfs.tar"
    events.info("packing the root file system")
    with tarfile.open(archive, "w") as tar:
        for entry in sorted(root.iterdir()):
            tar.add(entry, arcname=entry.name)
    events.info(f"importing it as {spec.ref}")
    repo, tag = spec.ref.split(":")
    try:
        client.api.import_image_from_file(
            str(archive), repository=repo, tag=tag, changes=list(spec.changes)
        )
    except docker.errors.APIError as exc:
        raise ImageError(f"importing {spec.ref} failed: {exc.explanation or exc}") from None


_STEP = re.compile(r"^Step (\d+)/(\d+)")


def build_image(client: docker.DockerClient, base: str, events: Events) -> str:
    """The distproc image for ``base``, built only if its input hash is new."""
    base_image = _exists(client, base)
    if base_image is None:
        raise ImageError(f"base image {base} disappeared")
    tag = f"{IMAGE_REPO}:{input_hash(base_image.id)}"
    if _exists(client, tag):
        events.info(f"image {tag} is up to date (cached)")
        return tag
    events.step(f"building {tag} on {base}")
    stream = client.api.build(
        path=str(IMAGES_DIR),
        dockerfile="Dockerfile",
        tag=tag,
        buildargs={"BASE": base},
        pull=False,
        rm=True,
        forcerm=True,
        network_mode="none",
        decode=True,
        labels={
            labels.MANAGED: "true",
            labels.ROLE: labels.ROLE_IMAGE,
            labels.INPUTS: tag.split(":")[1],
        },
    )
    for chunk in stream:
        if "error" in chunk:
            raise ImageError(f"building {tag} failed: {chunk['error'].strip()}")
        for line in chunk.get("stream", "").splitlines():
            if not line.strip():
                continue
            m = _STEP.match(line)
            if m:
                events.progress("build", int(m.group(1)) - 1, int(m.group(2)), "build steps")
            events.detail(line)
    if _exists(client, tag) is None:
        raise ImageError(f"building {tag} produced no image")
    events.progress("build", 1, 1, "build steps")
    return tag


CHAOS_REPO = "distproc-chaos"
#: What the chaos scenarios run in a worker's namespace: iptables (blackhole) and tc (iproute2:
#: slow-link). Debian's iptables is the nf_tables one, as the engine's own rules here are.
CHAOS_PACKAGES = ("iptables", "iproute2")


def chaos_image(client: docker.DockerClient, events: Events) -> str:
    """The chaos helper image: Debian minbase with iptables and tc, bootstrapped offline once
    (as the base is: debootstrap, ``docker import``), tagged by a hash of what it is made of
    and labelled like the other images. Nothing of the cluster's is in it."""
    digest = hashlib.sha256(repr((CHAOS_PACKAGES, SUITE, "minbase")).encode()).hexdigest()[:16]
    ref = f"{CHAOS_REPO}:{digest}"
    if _exists(client, ref):
        return ref
    events.step(
        f"bootstrapping the chaos helper image {ref} with debootstrap ({', '.join(CHAOS_PACKAGES)}"
        "; once, about a minute)"
    )
    spec = Bootstrap(
        ref=ref,
        include=CHAOS_PACKAGES,
        changes=(
            f"LABEL {labels.MANAGED}=true {labels.ROLE}={labels.ROLE_CHAOS_IMAGE} "
            f"{labels.INPUTS}={digest}",
            'CMD ["sh"]',
        ),
        packages_hint=110,
    )
    bootstrap_image(client, spec, events)
    return ref
