"""MICDIR's claim script end to end at --quick size (pipelines/experiments/micdir_claim.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.experiments.scripts import EXPERIMENTS
from tests.experiments.test_claims import claims


def test_quick_run_writes_paired_rows_and_a_verdict(tmp_path: Path) -> None:
    out = tmp_path / "claim"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(EXPERIMENTS.parents[1])}
    done = subprocess.run([sys.executable, str(EXPERIMENTS / "micdir_claim.py"), "--out", str(out), "--quick", "--seeds", "0", "1"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "results.json").read_text())
    rows = report["rows"]
    arms = {"VoxelMorph", "MICDIR", "MICDIR linear head"}
    assert {r["arm"] for r in rows} == arms
    cases = {r["case"] for r in rows}
    assert len(cases) == 2 and len(rows) == len(arms) * 2 * len(cases)  # arms x seeds x test pairs
    for r in rows:
        assert 0.0 <= r["score"] <= 1.0 and 0.0 <= r["identity"] <= 1.0
        assert r["ice_mm"] >= 0.0 and 0.0 <= r["folding_percent"] <= 100.0
    assert report["summary"]["verdict"] in claims.VERDICTS
    assert report["secondary"]["MICDIR linear head"]["verdict"] in claims.VERDICTS
    assert report["design"]["baseline"] == "VoxelMorph" and report["design"]["treatment"] == "MICDIR"
    assert "Verdict" in done.stdout and (out / "results.md").read_text().startswith("### MICDIR")
