"""The recovery time, from made-up progress series: the master's ``done`` every 0.25 s."""

from __future__ import annotations

import pytest

from orchestrate.chaos.recovery import Sample, baseline, recovery, windowed_rate

STEP = 0.25


def series(rates: list[tuple[float, float]], until: float) -> list[Sample]:
    """Samples every ``STEP`` s up to ``until``; ``rates`` are (from second, tasks/s) in
    order: the throughput changes at each ``from``."""
    out, done, t = [Sample(0.0, 0)], 0.0, 0.0
    while t < until - 1e-9:
        rate = [r for start, r in rates if start <= t + 1e-9][-1]
        t += STEP
        done += rate * STEP
        out.append(Sample(round(t, 6), round(done)))
    return out


def test_a_dip_and_the_way_back() -> None:
    """1000/s, a fault at 3 s takes it to 100/s, healed at 6 s: back to half within the 1 s
    trailing window of the heal."""
    s = series([(0, 1000), (3, 100), (6, 1000)], until=12)
    r = recovery(s, injected=3.0)
    assert r.baseline == pytest.approx(1000, rel=0.01)
    assert r.dipped and r.lowest == pytest.approx(100, rel=0.05)
    assert r.seconds is not None and 3.0 <= r.seconds <= 4.0  # 6 s, seen by the 7 s window
    assert "back to half" in r.note


def test_a_fault_the_cluster_does_not_feel_needs_no_recovery() -> None:
    s = series([(0, 1000), (3, 700)], until=10)
    r = recovery(s, injected=3.0)
    assert (r.dipped, r.seconds) == (False, 0.0)
    assert r.lowest == pytest.approx(700, rel=0.05) and "never below half" in r.note


def test_still_below_half_when_the_job_ends_is_no_recovery() -> None:
    s = series([(0, 1000), (3, 50)], until=9)
    r = recovery(s, injected=3.0)
    assert r.dipped and r.seconds is None and "until the job ended" in r.note


def test_the_jobs_last_second_is_not_judged() -> None:
    """A job's last tasks finish unevenly: a drop in its last window is not a dip."""
    s = series([(0, 1000), (8.25, 10)], until=9)
    r = recovery(s, injected=3.0)
    assert (r.dipped, r.seconds) == (False, 0.0)


def test_the_baseline_ends_where_the_scenario_began_to_act() -> None:
    """A worker frozen while the master is asked what it holds already works no more: the
    time it was frozen is not in the baseline, and the recovery counts from the kill."""
    s = series([(0, 1000), (2.5, 200), (6, 1000)], until=10)
    frozen_in_baseline = recovery(s, injected=3.0)
    right = recovery(s, injected=3.0, began=2.5)
    assert right.baseline == pytest.approx(1000, rel=0.01)
    assert frozen_in_baseline.baseline is not None and frozen_in_baseline.baseline < 950


@pytest.mark.parametrize(
    ("samples", "injected", "said"),
    [
        ([Sample(0, 0), Sample(0.25, 10)], 0.3, "too few"),
        ([Sample(0, 0), Sample(0.1, 5), Sample(0.2, 10), Sample(0.3, 15)], 0.3, "too short"),
        ([Sample(t / 4, 0) for t in range(12)], 2.8, "nothing was done"),
    ],
    ids=["two samples", "0.2 s of progress", "no progress"],
)
def test_no_baseline_is_said_not_guessed(samples: list[Sample], injected: float, said: str) -> None:
    r = recovery([*samples, Sample(5, 100)], injected)
    assert r.baseline is None and r.seconds is None and said in r.note
    assert baseline(samples, injected)[0] is None


def test_the_windowed_rate_reads_back_a_whole_window() -> None:
    s = series([(0, 400)], until=3)
    assert windowed_rate(s, 0) is None  # nothing a window earlier
    assert windowed_rate(s, len(s) - 1) == pytest.approx(400)
