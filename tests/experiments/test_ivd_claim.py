"""IVD-Net's claim experiment end to end (pipelines/experiments/ivd_claim.py --quick): rows and a verdict."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.experiments.scripts import load


def test_quick_run_writes_paired_rows_and_a_verdict(tmp_path: Path) -> None:
    ivd = load("ivd_claim")
    text = ivd.main(["--out", str(tmp_path), "--quick", "--seeds", "0"])
    report = json.loads((tmp_path / "results.json").read_text())
    claims = sys.modules["claims"]
    assert report["summary"]["verdict"] in claims.VERDICTS
    assert report["design"]["baseline"] == "early-fusion UNet" and report["design"]["treatment"] == "IVD-Net"
    rows = report["rows"]
    cases = sorted({r["case"] for r in rows})
    assert len(cases) == ivd.QUICK_PHANTOM["n_test"]
    # one score per arm x seed x test case, each a Dice
    assert sorted((r["arm"], r["seed"], r["case"]) for r in rows) == sorted(
        (arm, 0, case) for arm in ("early-fusion UNet", "IVD-Net") for case in cases)
    assert all(0.0 <= r["score"] <= 1.0 for r in rows)
    assert report["phantom"]["options"] == {"complementary": True}
    assert {r["arm"] for r in report["runs"]} == {"early-fusion UNet", "IVD-Net"}
    assert "Verdict" in text and (tmp_path / "results.md").read_text().startswith("### IVD-Net")
