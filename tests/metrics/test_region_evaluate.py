"""``medseg evaluate --regions brats`` on hand-made volumes with known answers."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from medseg.data.brats_labels import labels_to_regions
from medseg.data.synthetic import save_nifti
from medseg.errors import MedsegInputError
from medseg.metrics.region_evaluate import evaluate_region_arrays, evaluate_region_cases, read_regions
from tests.conftest import run_cli

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _reference(enhancing: int = 4) -> np.ndarray:
    """8^3 volume: oedema cube 6^3, core 4^3 inside, enhancing 2^3 at its centre."""
    ref = np.zeros((8, 8, 8), dtype=np.uint8)
    ref[1:7, 1:7, 1:7], ref[2:6, 2:6, 2:6], ref[3:5, 3:5, 3:5] = 2, 1, enhancing
    return ref


def test_known_scores_for_a_missed_enhancing_tumour() -> None:
    ref = _reference()
    pred = ref.copy()
    pred[pred == 4] = 1  # ET called necrosis: WT and TC perfect, ET missed
    rows = evaluate_region_arrays(labels_to_regions(pred), labels_to_regions(ref), (2.0, 2.0, 2.0), case="c")
    by = {r["label"]: r for r in rows}
    assert [r["label"] for r in rows] == ["WT", "TC", "ET"]
    assert by["WT"]["dice"] == 1.0 and by["TC"]["dice"] == 1.0 and by["TC"]["hd95_mm"] == 0.0
    assert by["ET"]["dice"] == 0.0 and by["ET"]["hd95_mm"] == pytest.approx(math.sqrt(3 * 16**2))  # diagonal in mm
    assert by["ET"]["volume_ref_ml"] == pytest.approx(8 * 8 / 1000)
    assert all(r["nesting_violations"] == 0 for r in rows)


def test_empty_enhancing_tumour_in_both_scores_one() -> None:
    ref = _reference()
    ref[ref == 4] = 1
    rows = evaluate_region_arrays(labels_to_regions(ref), labels_to_regions(ref), (1.0, 1.0, 1.0))
    et = rows[2]
    assert et["dice"] == 1.0 and et["hd95_mm"] == 0.0 and et["surface_dice_area"] == 1.0


def test_violations_are_counted_per_region_row() -> None:
    masks = labels_to_regions(_reference())
    masks[2, 0, 0, 0] = True  # ET voxel outside TC (and outside WT)
    masks[1, 7, 7, 7] = True  # TC voxel outside WT
    rows = evaluate_region_arrays(masks, labels_to_regions(_reference()), (1.0, 1.0, 1.0))
    assert [r["nesting_violations"] for r in rows] == [0, 1, 1]


def test_read_regions_detects_conventions_and_mask_stacks(tmp_path: Path) -> None:
    a = read_regions(save_nifti(tmp_path / "a.nii.gz", _reference(4), AFFINE))
    b = read_regions(save_nifti(tmp_path / "b.nii.gz", _reference(3), AFFINE))
    assert (a.source, b.source) == ("BraTS 2018 labels", "BraTS 2023 labels")
    np.testing.assert_array_equal(a.regions, b.regions)
    stack = save_nifti(tmp_path / "s.nii.gz", np.moveaxis(a.regions, 0, -1).astype(np.uint8), AFFINE)
    c = read_regions(stack)
    assert c.source == "region masks"
    np.testing.assert_array_equal(c.regions, a.regions)
    no_et = _reference()
    no_et[no_et == 4] = 1
    assert read_regions(save_nifti(tmp_path / "d.nii.gz", no_et, AFFINE)).source == "BraTS labels (no enhancing label)"
    with pytest.raises(MedsegInputError, match="e.nii.gz.*5"):
        read_regions(save_nifti(tmp_path / "e.nii.gz", np.full((4, 4, 4), 5, np.uint8), AFFINE))
    with pytest.raises(MedsegInputError, match="3 channels"):
        read_regions(save_nifti(tmp_path / "f.nii.gz", np.zeros((4, 4, 4, 2), np.uint8), AFFINE))


def test_cases_report_sources_and_violations(tmp_path: Path) -> None:
    ref = save_nifti(tmp_path / "ref.nii.gz", _reference(4), AFFINE)
    masks = read_regions(ref).regions
    masks[2, 0, 0, 0] = True
    pred = save_nifti(tmp_path / "pred.nii.gz", np.moveaxis(masks, 0, -1).astype(np.uint8), AFFINE)
    rows, notes = evaluate_region_cases([("c", pred, ref)])
    assert rows[2]["nesting_violations"] == 1 and rows[2]["dice"] == pytest.approx(16 / 17)
    assert notes == [
        "reference: BraTS 2018 labels (1 case)",
        "prediction: region masks (1 case)",
        "nesting violations: TC outside WT 0 voxel(s), ET outside TC 1 voxel(s), in 1 case(s)",
    ]
    with pytest.raises(MedsegInputError, match="unknown region set"):
        evaluate_region_cases([("c", pred, ref)], "kits")


def test_cli_scores_regions_of_label_maps_in_different_conventions(tmp_path: Path) -> None:
    preds, refs = tmp_path / "pred", tmp_path / "ref"
    for name, shift in (("case1", 0), ("case2", 1)):
        ref = _reference(4)
        pred = np.roll(_reference(3), shift, axis=0)  # prediction written in the 2023 convention
        save_nifti(refs / f"{name}.nii.gz", ref, AFFINE)
        save_nifti(preds / f"{name}.nii.gz", pred, AFFINE)
    out = tmp_path / "scores.csv"
    result = run_cli("evaluate", "-i", str(preds), "-r", str(refs), "-o", str(out), "--regions", "brats")
    assert result.returncode == 0, result.stderr
    assert "prediction: BraTS 2023 labels (2 cases)" in result.stdout
    assert "nesting violations: 0 (predictions are label maps" in result.stdout
    rows = list(csv.DictReader(out.open()))
    assert rows[0].keys() >= {"case", "label", "dice", "hd95_mm", "nesting_violations"}
    case1 = {r["label"]: float(r["dice"]) for r in rows if r["case"] == "case1"}
    assert case1 == {"WT": 1.0, "TC": 1.0, "ET": 1.0}  # same regions, other convention
    mean_et = next(float(r["dice"]) for r in rows if r["case"] == "mean" and r["label"] == "ET")
    assert mean_et == pytest.approx((1.0 + 0.5) / 2)  # case2: ET shifted by one of its two voxels along x


def test_cli_rejects_labels_with_regions(tmp_path: Path) -> None:
    ref = save_nifti(tmp_path / "ref.nii.gz", _reference(), AFFINE)
    result = run_cli("evaluate", "-i", str(ref), "-r", str(ref), "-o", str(tmp_path / "o.csv"), "--regions", "brats", "--labels", "1")
    assert result.returncode != 0 and result.stderr.startswith("error:") and "--regions" in result.stderr
    assert not (tmp_path / "o.csv").exists()
