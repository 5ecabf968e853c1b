"""The nested-head claim experiment's script runs end to end (``--quick``: tiny data, decides nothing)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.experiments.scripts import load


def test_quick_run_writes_paired_rows_and_a_verdict(tmp_path: Path) -> None:
    script, claims = load("nested_claim"), load("claims")
    threads = torch.get_num_threads()
    try:
        script.main(["--out", str(tmp_path), "--quick", "--seeds", "0"])
    finally:
        torch.set_num_threads(threads)
    report = json.loads((tmp_path / "results.json").read_text())
    rows = report["rows"]
    cases = sorted({r["case"] for r in rows})
    assert len(cases) == script.QUICK_DATA["n_test"]
    for arm in (script.BASELINE, script.TREATMENT, script.DIAGNOSTIC):  # every arm scored every test case
        assert sorted(r["case"] for r in rows if r["arm"] == arm) == cases
    assert all(0.0 <= r[k] <= 1.0 for r in rows for k in ("score", "WT", "TC", "ET_tuned"))
    assert all(r["violations_tuned"] == 0 for r in rows if r["arm"] != script.BASELINE)  # nested by construction
    summary = report["summary"]
    assert summary["verdict"] in claims.VERDICTS
    assert summary["gate"]["passed"] == (summary["gate"]["value"] >= script.GATE)
    assert report["design"]["margin"] == script.MARGIN and report["quick"] is True
    offsets = {r["arm"]: r["offsets"] for r in report["runs"]}
    assert offsets[script.BASELINE] is None and offsets[script.DIAGNOSTIC] == [0.5, 1.5, 2.5]  # fixed: as given
    assert offsets[script.TREATMENT] != [0.5, 1.5, 2.5]  # centred on the first batch
    assert "Verdict" in (tmp_path / "results.md").read_text()
