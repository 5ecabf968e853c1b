"""The IVDM3Seg loader on generated fake releases (per-case folders, split folders, test-set names)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.config import bundled_pipeline, load_pipeline
from medseg.data import discover_cases
from medseg.data.synthetic import save_nifti
from medseg.engine.data import pipeline_cases
from medseg.errors import MedsegInputError
from medseg.transforms.loading import LoadCased

MODALITIES = ("fat", "inn", "opp", "wat")


def _write(path: Path, label: bool = False) -> Path:
    array = np.zeros((4, 5, 6), np.uint8 if label else np.float32)
    return save_nifti(path, array, np.eye(4))


def _release(root: Path, cases: list[str], style: str = "folders") -> Path:
    for case in cases:
        for m in MODALITIES:
            folder = root / case if style == "folders" else root / "dataset"
            _write(folder / f"{case}_{m}.nii")
        label = root / case / f"{case}_Labels.nii" if style == "folders" else root / "label" / f"{case}-Labels.nii.gz"
        _write(label, label=True)
    return root


@pytest.mark.parametrize("style", ["folders", "split"])
def test_reads_the_release_in_place(tmp_path: Path, style: str) -> None:
    root = _release(tmp_path / "IVDM3Seg", ["01", "02", "10"], style)
    cases = discover_cases(root, layout="ivdm3seg")
    assert [c["case"] for c in cases] == ["01", "02", "10"]
    for case in cases:
        assert [Path(p).name for p in case["image"]] == [f"{case['case']}_{m}.nii" for m in MODALITIES]
        assert Path(case["label"]).name.lower().startswith(f"{case['case']}") and "labels" in case["label"].lower()


def test_test_set_names_and_unlabelled_cases(tmp_path: Path) -> None:
    root = tmp_path / "test"
    for m in MODALITIES:
        _write(root / "images" / "A1" / f"A1_{m.upper()}.nii.gz")
        _write(root / "images" / "H1" / f"H1_{m}.nii")
    _write(root / "labels" / "A1" / "A1-Labels.nii", label=True)
    cases = {c["case"]: c for c in discover_cases(root, layout="ivdm3seg")}
    assert sorted(cases) == ["A1", "H1"]
    assert cases["A1"]["label"].endswith("A1-Labels.nii")
    assert cases["H1"]["label"] is None
    assert Path(cases["A1"]["image"][3]).name == "A1_WAT.nii.gz"


def test_missing_modality_and_duplicates_are_errors(tmp_path: Path) -> None:
    root = _release(tmp_path / "r", ["01"])
    (root / "01" / "01_opp.nii").unlink()
    with pytest.raises(MedsegInputError, match="case '01' has no opp image"):
        discover_cases(root, layout="ivdm3seg")
    _write(root / "01" / "01_opp.nii")
    _write(root / "copy" / "01_opp.nii.gz")
    with pytest.raises(MedsegInputError, match="second file for case '01' opp"):
        discover_cases(root, layout="ivdm3seg")


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _write(tmp_path / "empty" / "scan.nii.gz")
    with pytest.raises(MedsegInputError, match="no IVDM3Seg files"):
        discover_cases(tmp_path / "empty", layout="ivdm3seg")
    with pytest.raises(MedsegInputError, match="not found"):
        discover_cases(tmp_path / "nowhere", layout="ivdm3seg")


def test_the_paper_pipeline_reads_a_release(tmp_path: Path) -> None:
    root = _release(tmp_path / "IVDM3Seg", ["01", "02", "03"])
    config = load_pipeline(bundled_pipeline("ivd_ivdnet"), {"data.dataset": str(root)})
    cases = pipeline_cases(config, tmp_path / "run")
    assert len(cases) == 3
    item = LoadCased(modalities=config.data.modalities)(cases[0])
    assert item["image"].shape == (4, 4, 5, 6) and item["label"].shape == (1, 4, 5, 6)
