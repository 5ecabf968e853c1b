"""Smoke test: every benchmark case runs at a tiny size and writes its JSON and markdown table, so the
benchmark code cannot rot (the figures themselves live in benchmarks/README.md, not in tests)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import run  # noqa: E402


def test_every_case_runs_at_a_tiny_size(tmp_path: Path) -> None:
    result = run.main(["--device", "cpu", "--quick", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "results-cpu-quick.json").read_text())
    assert saved["environment"]["torch"] and saved["environment"]["monai"] and "flags" in saved["environment"]
    cases = {row["case"].split()[0] for row in saved["rows"]}
    assert cases == {str(i) for i in range(1, 10)}
    assert all(row["medseg"] >= 0 and row["monai"] >= 0 for row in saved["rows"])
    agreement = [row for row in saved["rows"] if row["case"] == "4 agreement"]
    assert agreement and all(row["met"] for row in agreement)  # fp32 logits within 1e-5, same argmax
    table = [line for line in (tmp_path / "results-cpu-quick.md").read_text().splitlines() if line.startswith("|")]
    assert len(table) == len(result["rows"]) + 2  # header, separator, one line per figure
