"""Command line: ``orchestrate <command>``.

Each command is a small handler ``cmd_<name>(args) -> int`` registered in ``build_parser``.
Exit codes: 0 ok, 1 runtime error, 2 usage or configuration error, 3 a check failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .model import (
    SCHEMA_FILE,
    ConfigError,
    OrchestrateError,
    Problem,
    cluster_json_schema_text,
    load_cluster,
)

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_CONFIG = 2
EXIT_CHECK_FAILED = 3
DEFAULT_CONFIG = "cluster.yaml"


def _add_file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--file",
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"cluster description (default: {DEFAULT_CONFIG})",
    )


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate the cluster file; print a summary, or the model as JSON with --json."""
    warnings: list[Problem] = []
    cluster = load_cluster(args.file, warnings)
    for warning in warnings:
        print(
            f"{warning.file}:{warning.line}:{warning.col}: warning: {warning.message}",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(cluster.model_dump(mode="json"), indent=2))
    print(f"{args.file}: ok — {cluster.summary()}", file=sys.stderr)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON schema, write it (--write / -o), or check a written copy (--check)."""
    text = cluster_json_schema_text()
    if args.check:
        target = Path(args.output or SCHEMA_FILE)
        try:
            current = target.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != text:
            print(f"{target} is out of date: run `orchestrate schema --write`", file=sys.stderr)
            return EXIT_CHECK_FAILED
        print(f"{target}: up to date", file=sys.stderr)
        return EXIT_OK
    if args.output or args.write:
        target = Path(args.output or SCHEMA_FILE)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}", file=sys.stderr)
        return EXIT_OK
    sys.stdout.write(text)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; add a command with ``commands.add_parser`` and ``set_defaults``."""
    parser = argparse.ArgumentParser(
        prog="orchestrate", description="Run distproc as a containerized cluster."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser("validate", help="check cluster.yaml and summarise it")
    _add_file_option(p)
    p.add_argument("--json", action="store_true", help="print the validated model as JSON")
    p.set_defaults(func=cmd_validate)

    p = commands.add_parser("schema", help="print or write the JSON schema of cluster.yaml")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--write", action="store_true", help=f"write {SCHEMA_FILE}")
    out.add_argument("-o", "--output", metavar="FILE", help="write the schema to FILE")
    p.add_argument(
        "--check", action="store_true", help="exit 3 if the written schema is out of date"
    )
    p.set_defaults(func=cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (errors are reported without a traceback)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return exc.exit_code
    except OrchestrateError as exc:
        print(f"orchestrate: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"orchestrate: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        print("orchestrate: interrupted", file=sys.stderr)
        return 130
