"""Task kinds: what a task computes, how a job's payloads are made, and how a value is checked.

Built-in kinds make the classic lesson measurable:

- ``square``: the tutorial's ``n * n`` (tiny: the cost is all in the transport);
- ``cpu``: counts the primes below ``n`` by trial division, in pure Python (compute-bound,
  holds the GIL, so only processes make it parallel);
- ``io``: waits ``n`` milliseconds, standing for a network or disk call (threads suffice).

Any other kind is ``module:function``: the worker imports ``module`` (shipped in the image,
for example under ``distproc_kinds``) and calls ``function(payload)``.

A job's ``size`` means something else for each kind (``SIZE_MEANING``), so a job that gives
none gets its kind's own default (``DEFAULT_SIZE``), not one number for all: an ``io`` job
that inherited a ``cpu`` size of 20000 waited 20 s per task.
"""

from __future__ import annotations

import importlib
import keyword
import math
import operator
import random
import re
import time
from collections.abc import Callable, Sequence
from functools import cache
from itertools import repeat
from typing import Any, overload

BUILTIN = ("square", "cpu", "io")
#: A built-in name, or ``module:function``: a dotted module path and one function name.
KIND_PATTERN = r"^(square|cpu|io|[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*)$"
KIND_RE = re.compile(KIND_PATTERN)


def square(n: int) -> int:
    """The tutorial's task."""
    return n * n


def cpu(n: int) -> int:
    """Count the primes below ``n`` by trial division: real, GIL-holding CPU work."""
    count = 0
    for k in range(2, n):
        for d in range(2, math.isqrt(k) + 1):
            if k % d == 0:
                break
        else:
            count += 1
    return count


def io(ms: int) -> int:
    """Wait ``ms`` milliseconds, as a network or disk call would; returns ``ms``."""
    time.sleep(ms / 1000.0)
    return ms


_BUILTINS: dict[str, Callable[[Any], Any]] = {"square": square, "cpu": cpu, "io": io}

#: What ``size`` is to each built-in kind; any other kind ignores it (a task gets its index).
SIZE_MEANING = {"square": "ignores it", "cpu": "counts the primes below it", "io": "waits it in ms"}
#: A job's ``size`` when it gives none: each a task of a few milliseconds. cpu(10000) took
#: 5-6 ms on one core here (a 2-CPU host; cpu(20000) took 11 ms, cpu(50000) 77 ms).
DEFAULT_SIZE = {"square": 0, "cpu": 10_000, "io": 10}


def default_size(kind: str) -> int:
    """The size a job of ``kind`` gets when it gives none (0 where size is ignored)."""
    return DEFAULT_SIZE.get(kind, 0)


def size_help() -> str:
    """What ``size`` means per kind and its defaults, in one sentence (the field's help)."""
    parts = [
        f"'{k}' {SIZE_MEANING[k]}" + (f" (default {DEFAULT_SIZE[k]})" if DEFAULT_SIZE[k] else "")
        for k in BUILTIN
    ]
    return (
        f"per-task size, by kind: {'; '.join(parts)}; other kinds ignore it; "
        "unset: the kind's default"
    )


class KindError(ValueError):
    """A kind name that is neither built in nor a valid ``module:function``."""


def check_kind(kind: str) -> str:
    """Return ``kind`` if it is well formed, else raise KindError."""
    words = re.split(r"[.:]", kind)
    if kind in _BUILTINS or (KIND_RE.match(kind) and not any(map(keyword.iskeyword, words))):
        return kind
    raise KindError(
        f"kind {kind!r} must be one of {', '.join(BUILTIN)} or 'module:function' "
        "(a dotted module path, a colon, a function name)"
    )


@cache
def resolve(kind: str) -> Callable[[Any], Any]:
    """The callable behind a kind; imports ``module:function`` kinds on first use."""
    fn = _BUILTINS.get(kind)
    if fn is not None:
        return fn
    check_kind(kind)
    module, _, name = kind.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except Exception as exc:  # whatever importing user code raises, the task fails with it
        raise KindError(f"cannot load kind {kind!r}: {type(exc).__name__}: {exc}") from exc


def run(kind: str, payload: Any) -> Any:
    """Run one task. Module-level, so process pools can pickle it under any start method."""
    return resolve(kind)(payload)


class Payloads(Sequence[Any]):
    """The payloads of a job built from a spec, made on demand: O(1) memory for any length.

    A list of 10,000,000 ints costs about 360 MB in CPython (8-byte slots plus 28-byte int
    objects), more than the default master container's 256 MiB; this costs a few numbers.

    ``square`` gets the distinct integers ``0..count-1`` in an order fixed by ``seed`` (an
    affine permutation ``i -> (a*i + b) mod count``, ``gcd(a, count) == 1``), so that a
    classic result string ``'n * n = m'`` names its task unambiguously (``index_of``);
    ``cpu`` and ``io`` get ``size`` for every task; a custom kind gets the task index.
    """

    def __init__(self, kind: str, count: int, size: int, seed: int) -> None:
        self.kind, self.count, self.size, self.seed = kind, count, size, seed
        self._a, self._b = _affine(count, seed)
        self._a_inverse = pow(self._a, -1, count) if count > 1 else 1

    def __len__(self) -> int:
        return self.count

    @overload
    def __getitem__(self, i: int) -> Any: ...
    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.count))]
        if not -self.count <= i < self.count:
            raise IndexError(i)
        i %= self.count
        if self.kind == "square":
            return (self._a * i + self._b) % self.count
        if self.kind in ("cpu", "io"):
            return self.size
        return i

    def span(self, start: int, stop: int) -> list[Any]:
        """The payloads of ids ``start..stop-1`` (within the job), at C speed: a worker
        makes a lease's payloads and the master the values it checks them against."""
        if self.kind == "square":
            a, b = self._a, self._b
            return list(
                map(operator.mod, range(a * start + b, a * stop + b, a), repeat(self.count))
            )
        if self.kind in ("cpu", "io"):
            return [self.size] * (stop - start)
        return list(range(start, stop))

    def index_of(self, value: int) -> int | None:
        """The task whose payload is ``value`` (``square`` only), or None."""
        if self.kind != "square" or not 0 <= value < self.count:
            return None
        return ((value - self._b) * self._a_inverse) % self.count


class Named(Sequence[Any]):
    """A finished job's explicit payloads: only those a report names (dead, lost...)."""

    def __init__(self, kept: dict[int, Any], total: int) -> None:
        self._kept, self._total = kept, total

    def __len__(self) -> int:
        return self._total

    def __getitem__(self, tid: Any) -> Any:
        return self._kept.get(tid)

    def kept(self) -> dict[int, Any]:
        """The payloads kept, by task id (what a journal keeps of a finished job)."""
        return dict(self._kept)


def _affine(count: int, seed: int) -> tuple[int, int]:
    if count <= 1:
        return 1, 0
    rng = random.Random(seed)
    while True:
        a = rng.randrange(1, count)
        if math.gcd(a, count) == 1:
            return a, rng.randrange(count)


def make_payloads(kind: str, count: int, size: int, seed: int) -> Payloads:
    """The payloads of a job built from a spec (see ``Payloads``)."""
    return Payloads(kind, count, size, seed)


@cache
def _expected_cpu(n: int) -> int:
    return cpu(n)


def expected(kind: str, payload: Any) -> Any:
    """The right value for a built-in kind's payload (raises KeyError for custom kinds)."""
    if kind == "square":
        return payload * payload
    if kind == "cpu":
        return _expected_cpu(payload)
    if kind == "io":
        return payload
    raise KeyError(kind)


MAX_INT_BITS = 64  # a built-in kind's payload: an int of at most this many bits
MAX_CPU_PAYLOAD = 10_000_000  # cpu(n) by trial division: about a minute at this n


def check_payloads(kind: str, payloads: Sequence[Any]) -> None:
    """Raise ValueError unless explicit payloads suit a built-in kind: the master computes
    each distinct ``cpu`` answer itself, so an unbounded one would be unbounded work."""
    if kind not in _BUILTINS:
        return
    for i, p in enumerate(payloads):
        if type(p) is not int or p.bit_length() > MAX_INT_BITS or (kind != "square" and p < 0):
            shown = repr(p)[:60] if type(p) is not int else f"an int of {p.bit_length()} bits"
            raise ValueError(f"payload {i}: kind {kind} takes ints of at most 64 bits, not {shown}")
        if kind == "cpu" and p > MAX_CPU_PAYLOAD:
            raise ValueError(f"payload {i}: cpu payloads are at most {MAX_CPU_PAYLOAD:,}")


def checkable(kind: str) -> bool:
    """Whether the master can verify values of this kind itself."""
    return kind in _BUILTINS


def misses(kind: str, payloads: list[Any], values: list[Any]) -> list[int]:
    """The offsets where ``values`` are not what built-in ``kind`` makes of ``payloads``.

    A whole span at once: its expected values made and compared as lists (C speed) when
    every value is an int (so no ``__eq__`` of a stranger runs), value by value otherwise.
    """
    if kind == "square":
        want: list[Any] = list(map(operator.mul, payloads, payloads))
    elif kind == "cpu":
        want = list(map(_expected_cpu, payloads))
    else:
        want = payloads
    if set(map(type, values)) <= {int} and values == want:
        return []
    check = checker(kind)
    assert check is not None
    return [i for i, (p, v) in enumerate(zip(payloads, values, strict=True)) if not check(p, v)]


def checker(kind: str) -> Callable[[Any, Any], bool] | None:
    """``check(payload, value) -> bool`` for a built-in kind; None where values can't be checked.

    Values are checked as they arrive, so that the master need not keep them to judge a job.
    """
    if kind not in _BUILTINS:
        return None

    def check(payload: Any, value: Any) -> bool:
        # payloads were checked at submit (built-in kinds take ints), but whatever a value
        # or payload is, judging it must not raise into the ledger: a miss is "wrong"
        try:
            return type(value) is int and value == expected(kind, payload)
        except Exception:
            return False

    return check
