"""``medseg evaluate`` over a run of cases: the labels of the run, the both-empty policy, missing cases."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from medseg.data.synthetic import save_nifti
from medseg.errors import MedsegInputError
from medseg.metrics.evaluate import evaluate_run
from tests.conftest import run_cli

AFFINE = np.diag([2.0, 1.0, 1.5, 1.0])
SHAPE = (8, 8, 6)
DIAGONAL = math.sqrt(16**2 + 8**2 + 9**2)  # mm


def _map(*labels: int) -> np.ndarray:
    """Label 1 in one block, label 2 in another (each only if asked for)."""
    m = np.zeros(SHAPE, np.uint8)
    if 1 in labels:
        m[1:4, 1:4, 1:4] = 1
    if 2 in labels:
        m[5:7, 5:7, 2:5] = 2
    return m


def _write(folder: Path, case: str, array: np.ndarray) -> Path:
    return save_nifti(folder / f"{case}.nii.gz", array, AFFINE)


def _by(rows: list[dict]) -> dict[tuple[str, object], dict]:
    return {(str(r["case"]), r["label"]): r for r in rows}


def test_every_case_gets_a_row_for_every_label_of_the_run(tmp_path: Path) -> None:
    """Label 2 appears only in case a; case b (label 2 absent from both maps) scores it by the both-empty policy."""
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    _write(ref, "a", _map(1, 2)), _write(pred, "a", _map(1))  # label 2 missed in a
    _write(ref, "b", _map(1)), _write(pred, "b", _map(1))
    result = evaluate_run(pred, ref)
    rows = _by(result.rows)
    assert sorted(rows) == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    assert rows["b", 2]["dice"] == 1.0 and rows["b", 2]["hd95_mm"] == 0.0 and rows["b", 2]["surface_dice_area"] == 1.0
    assert rows["b", 2]["volume_pred_ml"] == 0.0 and rows["b", 2]["missing"] == 0
    assert rows["a", 2]["dice"] == 0.0 and rows["a", 2]["hd95_mm"] == pytest.approx(DIAGONAL)
    means = {r["label"]: r["dice"] for r in result.summary if r["case"] == "mean"}
    assert means == {1: 1.0, 2: 0.5}
    explicit = evaluate_run(pred, ref, labels=[1, 2])  # the means do not depend on --labels
    assert {r["label"]: r["dice"] for r in explicit.summary if r["case"] == "mean"} == means
    assert {r["label"]: r["dice"] for r in result.summary if r["case"] == "global"} == {1: 1.0, 2: 0.0}


def test_lone_both_empty_pair_writes_a_row(tmp_path: Path) -> None:
    empty = _write(tmp_path, "empty", _map())
    out = tmp_path / "m.csv"
    done = run_cli("evaluate", "-i", str(empty), "-r", str(empty), "-o", str(out))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    case = [r for r in rows if r["case"] == "empty"]
    assert [(r["label"], float(r["dice"]), float(r["hd95_mm"]), float(r["surface_dice_area"])) for r in case] == [
        ("foreground", 1.0, 0.0, 1.0)
    ]
    assert "no label in any reference or prediction" in done.stdout


def test_missing_predictions_score_as_empty_and_are_listed(tmp_path: Path) -> None:
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    for case in ("a", "b", "c"):
        _write(ref, case, _map(1, 2))
    _write(pred, "a", _map(1, 2))
    _write(pred, "stray", _map(1))  # a prediction without a reference
    out = tmp_path / "m.csv"
    done = run_cli("evaluate", "-i", str(pred), "-r", str(ref), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "warning:" in done.stderr and "no prediction for 2 reference case(s), scored as empty" in done.stderr
    assert "b, c" in done.stderr and "1 prediction(s) without a reference, ignored: stray" in done.stderr
    rows = _by(list(csv.DictReader(out.open())))
    assert {c for c, _ in rows} == {"a", "b", "c", "mean", "std", "global"}
    assert rows["a", "1"]["missing"] == "0" and float(rows["a", "1"]["dice"]) == 1.0
    for label in ("1", "2"):
        assert rows["c", label]["missing"] == "1" and float(rows["c", label]["dice"]) == 0.0
        assert float(rows["c", label]["hd95_mm"]) == pytest.approx(DIAGONAL)
        assert float(rows["mean", label]["dice"]) == pytest.approx(1 / 3)

    matched = tmp_path / "matched.csv"
    done = run_cli("evaluate", "-i", str(pred), "-r", str(ref), "-o", str(matched), "--matched-only")
    assert done.returncode == 0, done.stderr
    assert "no prediction for 2 reference case(s), not scored (--matched-only): b, c" in done.stderr
    rows = _by(list(csv.DictReader(matched.open())))
    assert {c for c, _ in rows} == {"a", "mean", "std", "global"} and float(rows["mean", "1"]["dice"]) == 1.0


def test_missing_cases_in_region_modes(tmp_path: Path) -> None:
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    brats = np.zeros(SHAPE, np.uint8)
    brats[1:7, 1:7, 1:5], brats[2:6, 2:6, 2:4], brats[3:5, 3:5, 2:3] = 2, 1, 4
    for case in ("a", "b"):
        _write(ref, case, brats)
    _write(pred, "a", brats)
    result = evaluate_run(pred, ref, regions="brats")
    rows = _by(result.rows)
    assert [rows["b", name]["dice"] for name in ("WT", "TC", "ET")] == [0.0, 0.0, 0.0]
    assert rows["b", "ET"]["missing"] == 1 and rows["a", "ET"]["missing"] == 0 and rows["a", "ET"]["dice"] == 1.0
    assert result.fields[-1] == "missing" and "nesting_violations" in result.fields
    assert "prediction: BraTS 2018 labels (1 case)" in result.notes
    lits = evaluate_run(pred, ref, regions="liver=1+2+4,tumour=4", matched_only=True)
    assert {r["case"] for r in lits.rows} == {"a"} and "not scored (--matched-only): b" in lits.warnings[0]
    lits = evaluate_run(pred, ref, regions="liver=1+2+4,tumour=4")
    assert _by(lits.rows)["b", "tumour"]["dice"] == 0.0 and _by(lits.rows)["b", "tumour"]["missing"] == 1
    pooled = {r["label"]: r["dice"] for r in lits.summary if r["case"] == "global"}
    assert pooled["tumour"] == pytest.approx(2 * 4 / (2 * 4 + 4))  # 4 ET voxels found in a, 4 missed in b


def test_folders_with_no_case_in_common_are_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "ref", "a", _map(1))
    _write(tmp_path / "pred", "a_0000", _map(1))
    with pytest.raises(MedsegInputError, match="no case name in common"):
        evaluate_run(tmp_path / "pred", tmp_path / "ref")
    with pytest.raises(MedsegInputError, match="exclude each other"):
        evaluate_run(tmp_path / "ref", tmp_path / "ref", labels=[1], regions="lits")
