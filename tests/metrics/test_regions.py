"""LiTS scoring: liver = labels 1 + 2, tumour = 2; Dice per case (mean) and global Dice (pooled counts)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medseg.data.synthetic import save_nifti
from medseg.errors import MedsegInputError
from medseg.metrics.regions import PooledCounts, evaluate_case, parse_regions
from tests.conftest import run_cli


def test_parse_regions() -> None:
    assert parse_regions("lits") == {"liver": (1, 2), "tumour": (2,)}
    assert parse_regions("wt=1+2+4, et=4") == {"wt": (1, 2, 4), "et": (4,)}
    for bad in ("liver", "=1", "a=x", ""):
        with pytest.raises(MedsegInputError, match="--regions"):
            parse_regions(bad)


def test_global_dice_pools_counts_while_per_case_averages() -> None:
    """A large well-segmented case and a small missed one: global Dice >> mean Dice."""
    big_ref = np.zeros((10, 10, 10), np.uint8)
    big_ref[:8, :8, :8] = 1
    big_ref[2:6, 2:6, 2:6] = 2  # 64 tumour voxels
    big_pred = big_ref.copy()
    small_ref = np.zeros((10, 10, 10), np.uint8)
    small_ref[0:2, 0:2, 0:2] = 2  # 8 tumour voxels, inside no liver label: liver region = tumour here
    small_pred = np.zeros_like(small_ref)
    pooled = PooledCounts()
    rows = evaluate_case(big_pred, big_ref, (1, 1, 1), regions=parse_regions("lits"), case="big", pooled=pooled)
    rows += evaluate_case(small_pred, small_ref, (1, 1, 1), regions=parse_regions("lits"), case="small", pooled=pooled)
    tumour = [r["dice"] for r in rows if r["label"] == "tumour"]
    assert tumour == [1.0, 0.0]
    pooled_rows = {r["label"]: r for r in pooled.rows()}
    assert pooled_rows["tumour"]["dice"] == pytest.approx(2 * 64 / (2 * 64 + 8))
    assert pooled_rows["liver"]["dice"] == pytest.approx(2 * 512 / (2 * 512 + 8))
    assert {r["case"] for r in pooled.rows()} == {"global"}


def test_plain_labels_also_pool_and_ignore_background() -> None:
    pooled = PooledCounts()
    rows = evaluate_case(np.array([[[0, 1, 2]]]), np.array([[[0, 1, 1]]]), (1, 1, 1), pooled=pooled)
    assert [r["label"] for r in rows] == [1, 2]
    assert {r["label"]: r["dice"] for r in pooled.rows()} == {1: pytest.approx(2 / 3), 2: 0.0}


def test_cli_evaluate_lits(tmp_path: Path) -> None:
    ref = np.zeros((6, 6, 4), np.uint8)
    ref[1:5, 1:5, 1:3] = 1
    ref[2:4, 2:4, 1] = 2
    pred = ref.copy()
    pred[2:4, 2:4, 1] = 1  # tumour called liver: liver perfect, tumour missed
    for folder, array in (("pred", pred), ("ref", ref)):
        save_nifti(tmp_path / folder / "case1.nii.gz", array, np.eye(4))
    done = run_cli("evaluate", "-i", str(tmp_path / "pred"), "-r", str(tmp_path / "ref"), "-o", str(tmp_path / "m.csv"), "--regions", "lits")
    assert done.returncode == 0, done.stderr
    assert "label liver: Dice 1.0000 (global 1.0000)" in done.stdout
    rows = {(r["case"], r["label"]): r for r in csv.DictReader((tmp_path / "m.csv").open())}
    assert float(rows[("global", "tumour")]["dice"]) == 0.0 and float(rows[("case1", "liver")]["dice"]) == 1.0
