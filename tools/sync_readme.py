"""Copy ``cluster.yaml`` into the README, between its markers: the example is the real file.

A hand-written example drifts (it did: ``internal``, ``seed``); a copy checked by
``tests/unit/test_readme.py`` cannot. Standard library only, so that ``make readme`` runs
before ``.venv`` exists. ``--check`` exits 3 when the README's copy is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
CLUSTER_YAML = REPO_ROOT / "cluster.yaml"
BEGIN = "<!-- cluster.yaml: begin (a copy: `make readme` writes it) -->"
END = "<!-- cluster.yaml: end -->"


def embed(readme: str, cluster_yaml: str) -> str:
    """The README with the text between the markers replaced by ``cluster_yaml`` as a block."""
    head, sep, rest = readme.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError(f"README.md lacks the markers {BEGIN!r} ... {END!r}")
    return f"{head}{BEGIN}\n```yaml\n{cluster_yaml.rstrip()}\n```\n{END}{tail}"


def main(argv: list[str]) -> int:
    """Write the README (or with --check, only say whether it is up to date)."""
    readme = README.read_text(encoding="utf-8")
    wanted = embed(readme, CLUSTER_YAML.read_text(encoding="utf-8"))
    if wanted == readme:
        print("README.md: the cluster.yaml example is up to date", file=sys.stderr)
        return 0
    if "--check" in argv:
        print("README.md: the cluster.yaml example is out of date: run `make readme`")
        return 3
    README.write_text(wanted, encoding="utf-8")
    print("README.md: copied cluster.yaml into its example", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
