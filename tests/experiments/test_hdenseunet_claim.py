"""The H-DenseUNet claim script end to end at --quick (tiny data and steps; checks the plumbing, not the outcome)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.experiments.scripts import load


def test_quick_run_writes_paired_rows_and_a_verdict(tmp_path: Path) -> None:
    script = load("hdenseunet_claim")
    text = script.main(["--out", str(tmp_path), "--quick"])
    report = json.loads((tmp_path / "results.json").read_text())
    rows = report["rows"]
    cases = {r["case"] for r in rows}
    assert len(cases) == 1 and {r["seed"] for r in rows} == {0}
    for arm in (script.BASELINE, script.METHOD, script.BRANCH):  # one row per (arm, seed, case), a Dice each
        mine = [r for r in rows if r["arm"] == arm]
        assert len(mine) == 1 and all(0.0 <= r[key] <= 1.0 for r in mine for key in ("score", "liver", "tumour_argmax"))
    summary = report["summary"]
    assert summary["verdict"] in script.claims.VERDICTS
    assert summary["gate"]["passed"] == (summary["gate"]["value"] >= script.GATE)
    assert report["design"]["margin"] == script.MARGIN and report["phantom"]["mimics"] == [1, 1]
    assert report["budget"]["name"] == "quick"
    assert summary["verdict"] in text and (tmp_path / "results.md").read_text().startswith("### H-DenseUNet")
    recipe = (tmp_path / "seed0" / "recipe.yaml").read_text()
    assert recipe.count("guidance: code") == 2 and "freeze:\n    - net2d" in recipe  # the issue-19 recipe
