"""The BraTS release layout loader on fake release trees (tiny NIfTI files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.data import discover_cases, list_layouts
from medseg.data.brats import MODALITIES, load_brats
from medseg.data.synthetic import save_nifti
from medseg.errors import MedsegInputError

SUFFIXES_2018 = ("_t1", "_t1ce", "_t2", "_flair")


def _write(path: Path, value: int = 0) -> Path:
    return save_nifti(path, np.full((2, 2, 2), value, dtype=np.uint8), np.eye(4))


def _case(folder: Path, suffixes=SUFFIXES_2018, seg: str | None = "_seg", ext: str = ".nii.gz") -> Path:
    for index, suffix in enumerate(suffixes):
        _write(folder / f"{folder.name}{suffix}{ext}", index)
    if seg is not None:
        _write(folder / f"{folder.name}{seg}{ext}")
    return folder


def _modality_values(case: dict) -> list[int]:
    import nibabel as nib

    return [int(np.asarray(nib.load(p).dataobj).flat[0]) for p in case["image"]]


def test_brats_2018_tree_with_hgg_lgg_and_a_validation_case(tmp_path: Path) -> None:
    root = tmp_path / "MICCAI_BraTS_2018_Data_Training"
    _case(root / "HGG" / "Brats18_TCIA01_190_1")
    _case(root / "LGG" / "Brats18_2013_0_1")
    _case(tmp_path / "MICCAI_BraTS_2018_Data_Training" / "Validation" / "Brats18_CBICA_AAM_1", seg=None)
    cases = load_brats(root)
    assert [c["case"] for c in cases] == ["Brats18_2013_0_1", "Brats18_CBICA_AAM_1", "Brats18_TCIA01_190_1"]
    assert all(_modality_values(c) == [0, 1, 2, 3] for c in cases)  # T1, T1ce, T2, FLAIR whatever the file order
    assert [Path(p).name for p in cases[2]["image"]][1] == "Brats18_TCIA01_190_1_t1ce.nii.gz"
    assert cases[0]["label"].endswith("Brats18_2013_0_1_seg.nii.gz")
    assert cases[1]["label"] is None
    assert MODALITIES == ("T1", "T1ce", "T2", "FLAIR")


def test_2021_nii_files_2020_misnamed_segmentation_and_2023_naming(tmp_path: Path) -> None:
    _case(tmp_path / "BraTS2021_00000", ext=".nii")
    quirk = _case(tmp_path / "BraTS20_Training_355", seg=None, ext=".nii")
    _write(quirk / "W39_1998.09.19_Segm.nii")
    _case(tmp_path / "BraTS-GLI-00000-000", suffixes=("-t1n", "-t1c", "-t2w", "-t2f"), seg="-seg")
    cases = {c["case"]: c for c in discover_cases(tmp_path, "brats")}
    assert sorted(cases) == ["BraTS-GLI-00000-000", "BraTS2021_00000", "BraTS20_Training_355"]
    assert cases["BraTS20_Training_355"]["label"].endswith("W39_1998.09.19_Segm.nii")
    assert cases["BraTS-GLI-00000-000"]["label"].endswith("-seg.nii.gz")
    assert all(_modality_values(c) == [0, 1, 2, 3] for c in cases.values())
    assert "brats" in list_layouts()


def test_a_case_folder_itself_is_a_dataset(tmp_path: Path) -> None:
    folder = _case(tmp_path / "Brats18_X_1")
    assert [c["case"] for c in load_brats(folder)] == ["Brats18_X_1"]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda root: _case(root / "Brats18_A_1", suffixes=SUFFIXES_2018[:3]), "lacks FLAIR"),
        (lambda root: (_case(root / "Brats18_A_1"), _write(root / "Brats18_A_1" / "Brats18_A_1_t1.nii")), "duplicates"),
        (lambda root: (_case(root / "HGG" / "Brats18_A_1"), _case(root / "LGG" / "Brats18_A_1")), "occurs twice"),
        (lambda root: _write(root / "notes" / "something.nii.gz"), "no BraTS case folders"),
    ],
    ids=["missing-modality", "nii-and-niigz", "duplicate-case", "no-cases"],
)
def test_broken_layouts_are_one_line_errors(tmp_path: Path, build, message: str) -> None:
    root = tmp_path / "release"
    root.mkdir()
    build(root)
    with pytest.raises(MedsegInputError, match=message):
        load_brats(root)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(MedsegInputError, match="not found"):
        load_brats(tmp_path / "nope")
