"""The bench's verdicts: a target missed is shown MISSED, one not measured says so."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, str(REPO_ROOT))

from bench import targets  # noqa: E402


def _verdicts(results: dict) -> dict[str, str]:
    return {t["target"]: t["verdict"] for t in targets.judge(results)}


def test_a_missed_target_is_missed_and_an_absent_one_not_measured() -> None:
    million = {w: {"e2e_rate": rate, "e2e_over_master": share}
               for w, rate, share in ((1, 600_000.0, 0.99), (2, 950_000.0, 0.79))}  # fmt: skip
    ready = {"8": {"up_seconds": 4.0}, "64": {"up_seconds": 61.0}}
    got = _verdicts({"ours": {"million": million}, "containers": {"time_to_ready": ready}})
    assert got[targets.TARGETS[0].name] == targets.MISSED  # 950k < 1M
    assert got[targets.TARGETS[1].name] == targets.MISSED  # 79% < 80%
    assert got["8 workers ready in under 10 s"] == targets.MET
    assert got["64 workers ready in under 60 s"] == targets.MISSED
    assert got[targets.TARGETS[5].name] == targets.NOT_MEASURED  # no classic rows
    million[2].update(e2e_rate=1_200_000.0, e2e_over_master=0.98)
    assert _verdicts({"ours": {"million": million}})[targets.TARGETS[0].name] == targets.MET


def test_skipped_rows_come_with_the_command_that_brings_them() -> None:
    peers = [{"name": "rq per-task (Worker)", "skipped": "redis-server not installed",
              "fix": "apt-get install -y redis-server"}, {"name": "tcp", "rate": 1.0}]  # fmt: skip
    res = {"targets": targets.judge({}), "skipped": targets.skipped_rows({"peers": peers})}
    text = targets.table(res)
    assert "rq per-task (Worker): redis-server not installed" in text
    assert "to bring them: apt-get install -y redis-server, then make bench again" in text
    assert f"0 of {len(targets.TARGETS)} targets missed" in text and "tcp" not in text


def test_the_journal_targets_judge_its_rate_and_its_ratio() -> None:
    rate, ratio = (t.name for t in targets.TARGETS if t.name.startswith("journal on"))
    assert "150,000" in rate and "half" in ratio
    modes = {"normal": {"e2e_rate": 140_000.0}, "off": {"e2e_rate": 260_000.0}}
    got = _verdicts({"journal": {"modes": modes, "ratios": {"normal/off": 140 / 260}}})
    assert (got[rate], got[ratio]) == (targets.MISSED, targets.MET)
    modes["normal"]["e2e_rate"] = 400_000.0
    got = _verdicts({"journal": {"modes": modes, "ratios": {"normal/off": 0.45}}})
    assert (got[rate], got[ratio]) == (targets.MET, targets.MISSED)
