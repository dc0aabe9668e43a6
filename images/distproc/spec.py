"""The job spec: what a job is, defined once (defaults, help, bounds, choices, flag spelling).

Every field of ``JobSpec`` carries its whole definition in ``field(metadata=...)`` (see
``option``). Everything else is derived from it through ``job_fields()``: the job flags of
``python -m distproc master|submit``, the orchestrator's ``Job`` model (and so
``cluster.schema.json``), the argv the orchestrator hands to ``submit``, and the overrides of
``orchestrate job``. A field added here therefore shows up everywhere, and a field cannot be
missed in one place and silently fall back to a default inside a container.

Stdlib only: this module runs in the containers, and the host imports it.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from functools import cache
from typing import Any, TypeVar

from .kinds import KIND_PATTERN, check_kind, default_size, size_help

MAX_TASKS = 10_000_000  # the ledger keeps a few lists of this length in memory
MAX_BATCH = 100_000  # one lease is one pickled message: keep it well under a frame's size
MAX_SIZE = 100_000_000  # io: ~28 h per task; cpu: far beyond what trial division finishes
MAX_SECONDS = 86_400.0  # a day: longer than any lease or task we mean to wait for
MAX_ATTEMPTS = 100
SEED_RANGE = (-(2**63), 2**63 - 1)  # 64-bit, so any other language's RNG can take it too
META_KEY = "distproc"  # the key of a field's ``Option`` in ``dataclasses.field(metadata=...)``

T = TypeVar("T")
Number = int | float


@dataclass(frozen=True)
class Option:
    """How one job field is offered and checked, apart from its name, type and default.

    ``low``/``high`` are inclusive bounds of a numeric field; ``choices`` closes a string
    field; ``check`` is a further rule on the value (it raises ``ValueError``); ``pattern``
    only documents that rule in the JSON schema. ``flag`` is the command-line spelling
    (default ``--name-with-dashes``); a bool's flag is its positive form and ``--no-...``
    is derived.
    """

    help: str
    flag: str = ""
    low: Number | None = None
    high: Number | None = None
    choices: tuple[str, ...] = ()
    check: Callable[[Any], object] | None = None
    pattern: str = ""


def option(
    default: T,
    help: str,
    *,
    flag: str = "",
    low: Number | None = None,
    high: Number | None = None,
    choices: tuple[str, ...] = (),
    check: Callable[[Any], object] | None = None,
    pattern: str = "",
) -> T:
    """A dataclass field with its default and its ``Option`` (typed as the default, so the
    dataclass still reads ``tasks: int = option(1000, ...)``)."""
    meta = Option(help, flag, low, high, choices, check, pattern)
    return field(default=default, metadata={META_KEY: meta})


@dataclass(frozen=True)
class JobSpec:
    """What a job is: built from a spec by the master, or submitted with explicit payloads.

    ``protocol`` comes first: the rule that ties ``kind`` to it is checked in field order.
    ``size`` may be None (the kind's default, ``kinds.DEFAULT_SIZE``): it is resolved as the
    spec is made, so the ledger, the payloads and the report always see the real number.
    """

    protocol: str = option(
        "leased",
        "'leased': tasks are leased and re-queued if a worker dies; 'classic': the plain "
        "multiprocessing.managers example (kind 'square' only)",
        choices=("leased", "classic"),
    )
    kind: str = option(
        "square",
        "task function: built-in 'square', 'cpu', 'io', or 'module:function'",
        check=check_kind,  # its KindError is a ValueError
        pattern=KIND_PATTERN,
    )
    tasks: int = option(1000, "number of tasks", low=0, high=MAX_TASKS)
    size: int | None = option(None, size_help(), low=0, high=MAX_SIZE)
    seed: int = option(1, "seed for generating task inputs", low=SEED_RANGE[0], high=SEED_RANGE[1])
    batch: int = option(256, "most tasks leased per round trip", low=1, high=MAX_BATCH)
    lease_seconds: float = option(
        10.0,
        "a lease not renewed by heartbeat within this many seconds expires",
        low=0.001,
        high=MAX_SECONDS,
    )
    task_timeout: float = option(
        600.0,
        "heartbeats renew a lease for at most this many seconds in all: a task that hangs "
        "in a live worker is taken back then",
        low=0.001,
        high=MAX_SECONDS,
    )
    max_attempts: int = option(
        3,
        "attempts (errors, crashes, expired leases) before dead-lettering",
        low=1,
        high=MAX_ATTEMPTS,
    )
    retry_errors: bool = option(
        True, "retry a task that raised (true), or mark it failed at once (false)"
    )
    results: str = option(
        "drop",
        "what the master does with each result value after checking it: drop it, or stream "
        "it as JSON lines to a file beside the master (a report with results needs 'stream')",
        choices=("drop", "stream"),
        flag="--results-mode",  # `submit --results` (include them in the report) implies stream
    )

    def __post_init__(self) -> None:
        if self.size is None:  # frozen: set once, here, before anyone reads it
            object.__setattr__(self, "size", default_size(self.kind))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class JobField:
    """One field of ``JobSpec`` with its type resolved: what every derived place iterates."""

    name: str
    type: type  # int, float, str or bool: exactly what the value must be (or None, if nullable)
    default: Any
    option: Option
    nullable: bool = False  # None is a value: "not given", resolved when the spec is made

    @property
    def flag(self) -> str:
        return self.option.flag or "--" + self.name.replace("_", "-")

    @property
    def negative_flag(self) -> str:
        """A bool's ``--no-...`` spelling (argparse.BooleanOptionalAction's)."""
        return "--no-" + self.flag.removeprefix("--")

    @property
    def low(self) -> Number | None:
        return self.option.low

    @property
    def high(self) -> Number | None:
        return self.option.high

    @property
    def choices(self) -> tuple[str, ...]:
        return self.option.choices

    @property
    def help(self) -> str:
        return self.option.help

    def check(self, value: Any) -> Any:
        """``value`` if it is exactly right for this field (an int for a float widened),
        else ``ValueError`` naming the field. No coercion: a bool is not an int, "3" is not 3.
        """
        name = self.name
        if value is None and self.nullable:
            return None
        if self.type is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, not {_shown(value)}")
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(
                    f"{name} must be between {_num(self.low)} and {_num(self.high)} (a finite "
                    f"number), not {value}"
                )
        elif not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
            what = {int: "an integer", str: "a string", bool: "true or false"}[self.type]
            raise ValueError(f"{name} must be {what}, not {_shown(value)}")
        if self.low is not None and value < self.low:
            raise ValueError(f"{name} must be >= {_num(self.low)}, not {value!r}")
        if self.high is not None and value > self.high:
            raise ValueError(f"{name} must be <= {_num(self.high)}, not {value!r}")
        if self.choices and value not in self.choices:
            raise ValueError(f"unknown {name} {value!r}: use {' or '.join(self.choices)}")
        if self.option.check is not None:
            self.option.check(value)
        return value

    def parse(self, text: str) -> Any:
        """The value of a command-line word, checked (bools are flags, never parsed)."""
        if self.type in (int, float):
            try:
                value = self.type(text)
            except ValueError:
                what = "an integer" if self.type is int else "a number"
                raise ValueError(f"{self.name} must be {what}, not {text!r}") from None
            return self.check(value)
        return self.check(text)

    def argv(self, value: Any) -> list[str]:
        """The command-line words that give this field ``value`` (explicit even at the
        default, so the container never falls back to its own default; ``spec_argv``
        resolves a None first, so None never reaches here)."""
        if value is None:
            raise ValueError(f"{self.name}: resolve None before spelling it as a flag")
        if self.type is bool:
            return [self.flag if value else self.negative_flag]
        return [self.flag, repr(value) if self.type is float else str(value)]


def _num(bound: Number | None) -> str:
    """A bound as people write it: 10000000, 0.001, 86400 (never 1e+07)."""
    if isinstance(bound, float) and bound.is_integer():
        bound = int(bound)
    return str(bound)


def _shown(value: Any) -> str:
    return f"{value!r} (a {type(value).__name__})"


@cache
def job_fields() -> tuple[JobField, ...]:
    """The fields of ``JobSpec`` in order, each with its resolved type and ``Option``."""
    hints = typing.get_type_hints(JobSpec)
    out = []
    for f in fields(JobSpec):
        if f.default is MISSING or META_KEY not in f.metadata:
            raise TypeError(f"JobSpec.{f.name} needs option(default, help, ...)")
        hint, nullable = hints[f.name], False
        if typing.get_origin(hint) in (typing.Union, types.UnionType):  # only ``X | None``
            (hint,) = [t for t in typing.get_args(hint) if t is not type(None)]
            nullable = True
        out.append(JobField(f.name, hint, f.default, f.metadata[META_KEY], nullable))
    return tuple(out)


def check_protocol_kind(protocol: str, kind: str) -> None:
    """The one rule between fields: the classic protocol is the tutorial's job."""
    if protocol == "classic" and kind != "square":
        raise ValueError(f"the classic protocol only supports kind 'square', not {kind!r}")


def make_spec(values: dict[str, Any]) -> JobSpec:
    """A checked JobSpec from a dict (what crosses the wire); raises ValueError naming the
    field. Everything is checked here, at the boundary, so the ledger can trust its spec."""
    by_name = {f.name: f for f in job_fields()}
    unknown = sorted(str(k) for k in values if k not in by_name)
    if unknown:
        raise ValueError(
            f"unknown job field {', '.join(map(repr, unknown))}: use {', '.join(by_name)}"
        )
    checked = {name: by_name[name].check(value) for name, value in values.items()}
    spec = JobSpec(**checked)
    check_protocol_kind(spec.protocol, spec.kind)
    return spec


def resolved(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with a None ``size`` replaced by its kind's default (as ``JobSpec`` does)."""
    if values["size"] is None:
        return {**values, "size": default_size(values["kind"])}
    return values


def spec_argv(values: dict[str, Any]) -> list[str]:
    """Command-line words for ``submit``/``master`` giving every field of ``values``
    (a complete spec: a missing field is a KeyError here, not a silent default there;
    a None size is given as its kind's default, so the container resolves nothing)."""
    values = resolved(values)
    argv: list[str] = []
    for f in job_fields():
        argv += f.argv(values[f.name])
    return argv
