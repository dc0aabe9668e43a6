"""The journal's bench section: its summary and table from runs (no processes here)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, str(REPO_ROOT))

from bench import journal, targets  # noqa: E402


def _run(rate: float, commits: int, changes: int, seconds: float) -> dict[str, float]:
    return {"e2e_rate": rate, "rate": rate * 1.02, "master_cores": 0.9, "foreign_cores": 0.1,
            "machine_cores": 1.8, "commits": commits, "changes": changes,
            "commit_seconds": seconds, "longest_commit_seconds": 0.002,
            "journal_bytes": 4096, "end_to_end_seconds": 1e6 / rate}  # fmt: skip


def test_the_journal_section_says_its_ratios_and_what_bounds_it() -> None:
    runs = {
        "off": [_run(r, 0, 0, 0.0) for r in (1.0e6, 1.2e6, 1.1e6)],
        "normal": [_run(r, 2000, 3200, 0.2) for r in (8.0e5, 9.0e5, 8.5e5)],
        "full": [_run(r, 1500, 3900, 1.2) for r in (6.0e5, 6.5e5, 7.0e5)],
    }
    res = journal.summarize(runs, 1_000_000)
    assert res["ratios"]["normal/off"] == 8.5e5 / 1.1e6
    assert res["modes"]["normal"]["exchanges_per_commit"] == 1.6
    ip = {m: {"us_per_exchange": 100.0, "us_under_lock": 50.0, "us_in_commits": 10.0,
              "us_under_lock_added": 10.0} for m in journal.MODES}  # fmt: skip
    res.update(in_process=ip, bound=journal.bound(res))
    text = journal.table(res)
    assert "normal" in text and "77%" in text and "what bounds it" in text
    verdicts = {t["target"]: t["verdict"] for t in targets.judge({"journal": res})}
    assert [v for k, v in verdicts.items() if k.startswith("journal on")] == [targets.MET] * 2
