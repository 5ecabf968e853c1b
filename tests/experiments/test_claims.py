"""The shared statistics of the claim experiments (pipelines/experiments/claims.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.experiments.scripts import load

claims = load("claims")
DESIGN = claims.Design(method="M", claim="B beats A", paper="+0.1", metric="Dice", baseline="A", treatment="B",
                       gate="A >= 0.5", margin=0.02, command="python x.py")


def rows_for(effect: float, noise: float, seeds: int = 5, cases: int = 6) -> list[dict]:
    rng = np.random.default_rng(1)
    case_level = rng.uniform(0.5, 0.9, cases)
    rows = []
    for s in range(seeds):
        for c in range(cases):
            base = case_level[c] + rng.normal(0, noise)
            rows.append({"arm": "A", "seed": s, "case": f"c{c}", "score": base})
            rows.append({"arm": "B", "seed": s, "case": f"c{c}", "score": base + effect + rng.normal(0, noise)})
    return rows


def test_a_clear_gain_is_supported() -> None:
    summary = claims.summarise(rows_for(0.1, 0.02), DESIGN, gate_value=0.7, gate_passed=True)
    low, high = summary["difference"]["ci95"]
    assert 0 < low < 0.1 < high
    assert summary["verdict"] == "supported"


def test_no_gain_is_undecided_or_not_supported() -> None:
    assert claims.summarise(rows_for(0.0, 0.15), DESIGN, 0.7, True)["verdict"] == "undecided"
    assert claims.summarise(rows_for(-0.05, 0.01), DESIGN, 0.7, True)["verdict"] == "not supported"


def test_a_failed_gate_is_no_finding_whatever_the_difference() -> None:
    assert claims.summarise(rows_for(0.1, 0.02), DESIGN, gate_value=0.1, gate_passed=False)["verdict"] == "no finding"


def test_the_crossed_bootstrap_is_wider_than_cells_treated_as_independent() -> None:
    """A per-seed offset shared by every case must widen the interval (seeds are resampled as units)."""
    rng = np.random.default_rng(0)
    diff = rng.normal(0.05, 0.05, size=(5, 1)) + rng.normal(0, 0.01, size=(5, 8))
    low, high = claims.crossed_bootstrap(diff)
    flat = diff.reshape(-1, 1)
    flat_low, flat_high = claims.crossed_bootstrap(flat)
    assert high - low > 1.5 * (flat_high - flat_low)


def test_unpaired_scores_are_refused() -> None:
    rows = rows_for(0.1, 0.02)
    rows = [r for r in rows if not (r["arm"] == "B" and r["seed"] == 0 and r["case"] == "c0")]
    with pytest.raises(ValueError, match="not every seed scored every case"):
        claims.summarise(rows, DESIGN, 0.7, True)


def test_results_table_reads_what_write_results_wrote(tmp_path: Path) -> None:
    rows = rows_for(0.1, 0.02)
    summary = claims.summarise(rows, DESIGN, 0.7, True)
    text = claims.write_results(tmp_path, DESIGN, rows, summary)
    assert "**supported**" in text
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["summary"]["verdict"] == "supported"
    table = claims.results_table([tmp_path / "results.json"]).splitlines()
    assert len(table) == 3 and "| M | B beats A |" in table[2] and "supported" in table[2]


def test_run_parallel_runs_every_task_in_order() -> None:
    assert claims.run_parallel(pow, [(2, 3), (3, 2), (4, 1)], processes=2) == [8, 9, 4]


def test_run_parallel_fails_when_a_worker_dies() -> None:
    """A worker killed outright (here: os._exit, as an out-of-memory kill would) stops the run with an error."""
    from concurrent.futures.process import BrokenProcessPool

    with pytest.raises(BrokenProcessPool):
        claims.run_parallel(os._exit, [(3,), (4,)], processes=2)
