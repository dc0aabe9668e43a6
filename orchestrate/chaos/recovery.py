"""How long the cluster took to recover from a fault, from the master's progress alone.

The job's ``--progress json`` lines (``done`` as the master counts it, about every 0.25 s)
are samples ``(t, done)`` on this host's monotonic clock. Throughput is measured over a
trailing window of ``WINDOW`` seconds; the baseline is the throughput before the fault (up
to ``BASELINE_SPAN`` seconds of it, the job's first interval left out: workers are still
taking their first leases). The cluster has recovered when a window after the fault is back
to at least half the baseline; if no window fell below half, it never needed to (0 s). A
trailing window lags by up to ``WINDOW``, so the time is good to about a second. The job's
last ``WINDOW`` is not judged: its last tasks finish unevenly, fault or not.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass
from typing import Any

WINDOW = 1.0
BASELINE_SPAN = 5.0
MIN_BASELINE_SPAN = 0.5  # seconds of progress before the fault, at the least, to judge by
HALF = 0.5


@dataclass(frozen=True)
class Sample:
    """The master's count of final tasks, ``done``, seen at ``t`` (monotonic seconds)."""

    t: float
    done: int


@dataclass(frozen=True)
class Recovery:
    """What the progress says about one fault: the throughput before it (tasks/s), the
    lowest windowed throughput after it, whether that fell below half, and the seconds from
    the injection until it was back to half (0: it never fell; None: unknown, ``note`` says
    why)."""

    baseline: float | None
    lowest: float | None
    dipped: bool
    seconds: float | None
    note: str

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("baseline", "lowest", "seconds"):
            if out[key] is not None:
                out[key] = round(out[key], 3)
        return out


def windowed_rate(samples: list[Sample], i: int, window: float = WINDOW) -> float | None:
    """Tasks/s over the ``window`` seconds before sample ``i`` (from the last sample at least
    ``window`` earlier); None when there is none that early."""
    times = [s.t for s in samples]
    k = bisect.bisect_right(times, samples[i].t - window) - 1
    if k < 0:
        return None
    span = samples[i].t - samples[k].t
    return (samples[i].done - samples[k].done) / span if span > 0 else None


def baseline(samples: list[Sample], began: float) -> tuple[float | None, str]:
    """Tasks/s before the fault began, and why there is none when there is none."""
    before = [s for s in samples if s.t <= began]
    if len(before) < 3:
        return None, f"{len(before)} progress samples before the fault: too few to judge by"
    start = max(before[1].t, began - BASELINE_SPAN)
    first = next(s for s in before if s.t >= start)
    last = before[-1]
    if last.t - first.t < MIN_BASELINE_SPAN:
        return None, f"{last.t - first.t:.2f}s of progress before the fault: too short"
    rate = (last.done - first.done) / (last.t - first.t)
    if rate <= 0:
        return None, "nothing was done before the fault: no throughput to get back to"
    return rate, ""


def recovery(
    samples: list[Sample], injected: float, began: float | None = None, window: float = WINDOW
) -> Recovery:
    """The recovery from a fault that took hold at ``injected``; the baseline ends where the
    scenario began to act (``began``, default ``injected``: a worker frozen while the master
    is asked what it holds is already not working). See the module docstring."""
    samples = sorted(samples, key=lambda s: s.t)
    base, why = baseline(samples, injected if began is None else min(began, injected))
    if base is None:
        return Recovery(None, None, False, None, why)
    if not samples or samples[-1].t <= injected:
        return Recovery(base, None, False, None, "no progress after the fault")
    judged_until = samples[-1].t - window
    rates = [
        (s.t, r)
        for i, s in enumerate(samples)
        if injected < s.t <= judged_until and (r := windowed_rate(samples, i, window)) is not None
    ]
    if not rates:
        return Recovery(base, None, False, None, "the job ended within a window of the fault")
    half = base * HALF
    lowest = min(r for _, r in rates)
    dip = next((k for k, (_, r) in enumerate(rates) if r < half), None)
    if dip is None:
        note = f"never below half of {base:.0f}/s (lowest {lowest / base:.0%} of it)"
        return Recovery(base, lowest, False, 0.0, note)
    back = next((t for t, r in rates[dip + 1 :] if r >= half), None)
    if back is None:
        note = f"below half of {base:.0f}/s until the job ended (lowest {lowest / base:.0%})"
        return Recovery(base, lowest, True, None, note)
    note = f"back to half of {base:.0f}/s (lowest {lowest / base:.0%} of it)"
    return Recovery(base, lowest, True, back - injected, note)
