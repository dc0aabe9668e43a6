"""Vendor the dashboard's JavaScript libraries: ``python3 tools/vendor_js.py [--check]``.

The libraries are committed under ``orchestrate/dashboard/static/vendor/`` (the page works
offline, nothing comes from a CDN), each with its license, at the version pinned in
``vendor.json`` beside them, which also holds the npm tarball's integrity (sha512) and the
sha256 of every file taken from it. This script fetches each pinned tarball with the npm
client (``npm pack NAME@VERSION``: npm's own registry, configured as npm is), refuses it
unless its integrity matches the pin, and copies the listed files out of it.

``--check`` fetches nothing: it checks that the committed files are the pinned ones (the
unit tests do the same). ``--update NAME@VERSION`` re-pins a library to a new version (its
new integrity and hashes are written to vendor.json: review them in the diff).

Standard library only, plus ``npm`` on PATH (Debian: ``apt-get install npm``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[1] / "orchestrate" / "dashboard" / "static" / "vendor"
LOCK = VENDOR / "vendor.json"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def integrity(path: Path) -> str:
    """npm's ``integrity`` string of a tarball (Subresource Integrity, sha512)."""
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def check() -> list[str]:
    """Problems with the committed files against vendor.json (empty: all as pinned)."""
    problems = []
    for lib in json.loads(LOCK.read_text())["libraries"]:
        for item in lib["files"]:
            path = VENDOR / item["to"]
            if not path.exists():
                problems.append(f"{path.name}: missing ({lib['name']}@{lib['version']})")
            elif sha256(path) != item["sha256"]:
                problems.append(f"{path.name}: not the file of {lib['name']}@{lib['version']}")
    return problems


def fetch(name: str, version: str, directory: Path) -> Path:
    """The tarball of ``name@version``, by the npm client."""
    res = subprocess.run(
        ["npm", "pack", f"{name}@{version}", "--silent", "--pack-destination", str(directory)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if res.returncode != 0:
        sys.exit(f"vendor_js: npm pack {name}@{version} failed: {res.stderr.strip()}")
    return directory / res.stdout.strip().splitlines()[-1]


def vendor(update: str | None = None) -> None:
    if shutil.which("npm") is None:
        sys.exit("vendor_js: needs npm on PATH (apt-get install npm)")
    lock = json.loads(LOCK.read_text())
    if update:
        name, _, version = update.rpartition("@")
        lib = next((x for x in lock["libraries"] if x["name"] == name), None)
        if lib is None or not version:
            sys.exit("vendor_js: --update NAME@VERSION with NAME one of the pinned libraries")
        lib["version"], lib["integrity"] = version, ""
    with tempfile.TemporaryDirectory() as tmp:
        for lib in lock["libraries"]:
            tarball = fetch(lib["name"], lib["version"], Path(tmp))
            got = integrity(tarball)
            if lib["integrity"] and got != lib["integrity"]:
                sys.exit(f"vendor_js: {tarball.name}: integrity {got} is not the pinned one")
            lib["integrity"] = got
            with tarfile.open(tarball) as tar:
                for item in lib["files"]:
                    member = tar.extractfile(f"package/{item['from']}")
                    if member is None:
                        sys.exit(f"vendor_js: {tarball.name} has no {item['from']}")
                    data = member.read()
                    digest = hashlib.sha256(data).hexdigest()
                    if item.get("sha256") and digest != item["sha256"] and not update:
                        sys.exit(f"vendor_js: {item['from']}: sha256 {digest} is not the pinned")
                    item["sha256"] = digest
                    (VENDOR / item["to"]).write_bytes(data)
            print(f"vendor_js: {lib['name']}@{lib['version']} ok ({got[:20]}...)")
    LOCK.write_text(json.dumps(lock, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="check the committed files only")
    parser.add_argument("--update", metavar="NAME@VERSION", help="re-pin one library")
    args = parser.parse_args()
    if args.check:
        problems = check()
        for p in problems:
            print(f"vendor_js: {p}", file=sys.stderr)
        sys.exit(1 if problems else 0)
    vendor(args.update)


if __name__ == "__main__":
    main()
