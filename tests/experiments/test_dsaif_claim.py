"""The DSAIF claim experiment runs end to end (``--quick``: tiny data and steps; nothing about the outcome)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.experiments.scripts import load


def test_quick_run_writes_paired_rows_and_a_verdict(tmp_path: Path, capsys) -> None:  # noqa: ANN001 - pytest fixture
    script = load("dsaif_claim")
    assert script.main(["--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "results.json").read_text())
    rows = report["rows"]
    cases = {r["case"] for r in rows}
    assert len(cases) == 2  # the quick data's test cases
    assert sorted((r["arm"], r["case"]) for r in rows) == sorted((arm, c) for arm in ("DSAIF", "labelled-only") for c in cases)
    assert all(r["seed"] == 0 and 0.0 <= r["score"] <= 1.0 for r in rows)
    summary = report["summary"]
    assert summary["verdict"] in load("claims").VERDICTS
    assert summary["gate"]["passed"] == (0.5 <= summary["gate"]["value"] <= 0.85)
    assert report["design"]["margin"] == script.MARGIN and report["design"]["baseline"] == "labelled-only"
    # the DSAIF run used the unlabelled cases, the baseline did not (same labelled cases: the same seed)
    runs = {r["arm"]: r for r in report["runs"]}
    assert runs["DSAIF"]["labelled_cases"] == runs["labelled-only"]["labelled_cases"]
    assert runs["DSAIF"]["unlabelled_cases"] > 0
    assert "Verdict" in (tmp_path / "results.md").read_text() and "Verdict" in capsys.readouterr().out
