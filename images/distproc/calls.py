"""Checking what a client sends, before anything changes.

Every method the master exposes runs its arguments through these first: types, finite
numbers, ranges, list lengths. A malformed call raises ``CallError`` (the client gets it as
the call's error) and leaves the job exactly as it was, so the same batch, sent again
correctly, counts. One malformed entry in a batch used to mark tasks ok without counting
them, which wedged the job for good; ``wait=nan`` spun a server thread forever.
"""

from __future__ import annotations

import math
from typing import Any

MAX_TEXT = 256  # worker and job ids
MAX_ERROR = 2000  # an error text is cut to this
MAX_ITEMS = 1_000_000  # entries in one list argument
#: ranges in one call's results: each costs the master a few us under its lock (6 us, measured:
#: 900,000 one-id ranges held it 6 s), where ours send one per lease, or a few per pool
MAX_RANGES = 100_000
MAX_IDENTITY = 16_384  # characters of a worker's identity, as repr
MAX_WAIT = 30.0  # seconds a call may block the thread that serves it
MAX_WANT = 1_000_000


class CallError(ValueError):
    """A malformed call: refused with this message, nothing changed.

    It travels to the client as a plain ``ValueError``, so that a client without distproc
    installed (the tutorial's worker) can unpickle it."""

    def __reduce__(self) -> tuple[type, tuple[str, ...]]:
        return ValueError, tuple(map(str, self.args))


def text(name: str, value: Any, optional: bool = False, limit: int = MAX_TEXT) -> Any:
    if value is None and optional:
        return None
    if type(value) is not str or len(value) > limit:
        raise CallError(f"{name} must be a string of at most {limit} characters, "
                        f"not {_show(value)}")  # fmt: skip
    return value


def integer(name: str, value: Any, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise CallError(f"{name} must be an integer in [{low}, {high}], not {_show(value)}")
    return value


def seconds(name: str, value: Any, high: float = MAX_WAIT, optional: bool = False) -> Any:
    """A finite number of seconds, clamped to [0, high]; None passes if ``optional``."""
    if value is None and optional:
        return None
    if type(value) not in (int, float) or not math.isfinite(value):
        raise CallError(f"{name} must be a finite number of seconds, not {_show(value)}")
    return min(max(float(value), 0.0), high)


def flag(name: str, value: Any) -> bool:
    if type(value) is not bool:
        raise CallError(f"{name} must be true or false, not {_show(value)}")
    return value


def results(name: str, value: Any) -> list[tuple[int, Any]]:
    """``[(task id, value), ...]``: exactly pairs, integer ids."""
    items = _list(name, value)
    for i, pair in enumerate(items):
        if type(pair) is not tuple or len(pair) != 2 or type(pair[0]) is not int:
            raise CallError(f"{name}[{i}] must be a pair (integer id, value), not {_show(pair)}")
    return items


def ranges(name: str, value: Any) -> list[tuple[int, int]]:
    """``[(first id, count), ...]``: pairs of integers, first >= 0, count >= 1; at most
    ``MAX_RANGES``."""
    items = _list(name, value)
    if len(items) > MAX_RANGES:
        raise CallError(f"{name} has {len(items):,} ranges: at most {MAX_RANGES:,} per call")
    for i, r in enumerate(items):
        if (type(r) is not tuple or len(r) != 2 or type(r[0]) is not int or type(r[1]) is not int
                or r[0] < 0 or r[1] < 1):  # fmt: skip
            raise CallError(f"{name}[{i}] must be a pair (first id >= 0, count >= 1), "
                            f"not {_show(r)}")  # fmt: skip
    return items


def done(name: str, value: Any) -> list[tuple[int, list, list, list]]:
    """``[(lease id, ranges, values, errors), ...]`` (``wire.py``): at most ``MAX_ITEMS``
    values and ``MAX_RANGES`` ranges in all. Which ids the ranges may name is the job's to
    say (``wire.check_done``)."""
    out, values_in_all, ranges_in_all = [], 0, 0
    for i, entry in enumerate(_list(name, value)):
        if type(entry) is not tuple or len(entry) != 4 or type(entry[0]) is not int:
            raise CallError(f"{name}[{i}] must be (lease id, ranges, values, errors), "
                            f"not {_show(entry)}")  # fmt: skip
        values = _list(f"{name}[{i}] values", entry[2])
        spans = _list(f"{name}[{i}] ranges", entry[1])
        values_in_all += len(values)
        ranges_in_all += len(spans)
        if values_in_all > MAX_ITEMS or ranges_in_all > MAX_RANGES:
            raise CallError(f"{name} has over {MAX_ITEMS:,} values or {MAX_RANGES:,} ranges: "
                            "at most that many per call")  # fmt: skip
        out.append((entry[0], ranges(f"{name}[{i}] ranges", spans), values,
                    errors(f"{name}[{i}] errors", entry[3])))  # fmt: skip
    return out


def errors(name: str, value: Any) -> list[tuple[int, str]]:
    """``[(task id, error text), ...]``; texts are cut to ``MAX_ERROR`` characters."""
    items = results(name, value)
    for i, (_tid, error) in enumerate(items):
        if type(error) is not str:
            raise CallError(f"{name}[{i}] must be a pair (integer id, text), not {_show(items[i])}")
    return [(tid, error[:MAX_ERROR]) for tid, error in items]


def identity(value: Any) -> dict[str, Any]:
    if type(value) is not dict or not all(type(k) is str for k in value):
        raise CallError(f"identity must be a dict with string keys, not {_show(value)}")
    if len(repr(value)) > MAX_IDENTITY:
        raise CallError(f"identity must be at most {MAX_IDENTITY} characters as text")
    return dict(value)


def _list(name: str, value: Any) -> list[Any]:
    if type(value) not in (list, tuple):
        raise CallError(f"{name} must be a list, not {_show(value)}")
    if len(value) > MAX_ITEMS:
        raise CallError(f"{name} has {len(value):,} entries: at most {MAX_ITEMS:,} per call")
    return value if type(value) is list else list(value)  # ours: unpickled for this call


def _show(value: Any) -> str:
    shown = repr(value)
    return f"{type(value).__name__} {shown[:60]}{'...' if len(shown) > 60 else ''}"
