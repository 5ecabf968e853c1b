"""Registration pair sources: pairs.json, Learn2Reg JSON (paired and inter-subject), imagesTr folders,
neurite-OASIS folders; splits that keep validation subjects out of training; clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.data.pairs import discover_pairs, split_pairs
from medseg.errors import MedsegConfigError, MedsegInputError


def _nifti(path: Path, labels: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.zeros((6, 6, 6), np.uint8 if labels else np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


def test_pairs_json_with_optional_labels_and_sections(tmp_path: Path) -> None:
    for name in ("a", "b", "c", "d", "la", "lb"):
        _nifti(tmp_path / f"{name}.nii.gz", labels=name.startswith("l"))
    listing = {
        "labels": {"0": "background", "1": "brain"},
        "pairs": [
            {"name": "one", "fixed": "a.nii.gz", "moving": "b.nii.gz", "fixed_labels": "la.nii.gz", "moving_labels": "lb.nii.gz"},
            {"fixed": "c.nii.gz", "moving": "d.nii.gz"},
        ],
        "test": [{"fixed": "d.nii.gz", "moving": "a.nii.gz"}],
    }
    (tmp_path / "pairs.json").write_text(json.dumps(listing))
    for source in (tmp_path, tmp_path / "pairs.json"):
        pairset = discover_pairs(source)
        assert [p["case"] for p in pairset.train] == ["one", "pairs_001"] and len(pairset.test) == 1
        assert pairset.train[0]["moving_labels"] == str((tmp_path / "lb.nii.gz").resolve())
        assert pairset.train[1]["fixed_labels"] is None and pairset.labels == {0: "background", 1: "brain"}
    train, val = split_pairs(pairset, seed=0, val_fraction=0.5)
    assert len(train) == len(val) == 1
    train, val = split_pairs(pairset, seed=0, val_fraction=0.0, val_names=["one"])
    assert [p["case"] for p in val] == ["one"] and [p["case"] for p in train] == ["pairs_001"]
    with pytest.raises(MedsegConfigError, match="unknown pair"):
        split_pairs(pairset, 0, 0.0, ["nope"])
    listing["pairs"][1]["moving"] = "missing.nii.gz"
    (tmp_path / "pairs.json").write_text(json.dumps(listing))
    with pytest.raises(MedsegInputError, match="missing.nii.gz"):
        discover_pairs(tmp_path)


def _learn2reg(root: Path, paired: bool) -> Path:
    subjects = [f"OASIS_{i:04d}_0000.nii.gz" for i in range(1, 6)]
    for name in subjects:
        _nifti(root / "imagesTr" / name)
        _nifti(root / "labelsTr" / name, labels=True)
    meta = {
        "name": "OASIS",
        "training": [{"image": f"./imagesTr/{n}", "label": f"./labelsTr/{n}"} for n in subjects],
        "registration_val": [{"fixed": f"./imagesTr/{subjects[3]}", "moving": f"./imagesTr/{subjects[4]}"}],
        "training_paired_images": (
            [{"fixed": f"./imagesTr/{subjects[0]}", "moving": f"./imagesTr/{subjects[1]}"},
             {"fixed": f"./imagesTr/{subjects[1]}", "moving": f"./imagesTr/{subjects[2]}"}] if paired else []
        ),
    }
    path = root / "OASIS_dataset.json"
    path.write_text(json.dumps(meta))
    return path


def test_learn2reg_inter_subject_pairs_exclude_the_validation_subjects(tmp_path: Path) -> None:
    _learn2reg(tmp_path, paired=False)
    pairset = discover_pairs(tmp_path)
    assert len(pairset.train) == 3 * 2  # ordered pairs of the three subjects not used for validation
    assert {Path(p["fixed"]).name for p in pairset.train} == {f"OASIS_000{i}_0000.nii.gz" for i in (1, 2, 3)}
    train, val = split_pairs(pairset, seed=0, val_fraction=0.5)
    assert val == pairset.val and val[0]["case"] == "OASIS_0004_0000__OASIS_0005_0000"
    assert Path(val[0]["moving_labels"]).parent.name == "labelsTr"


def test_learn2reg_paired_images(tmp_path: Path) -> None:
    path = _learn2reg(tmp_path, paired=True)
    pairset = discover_pairs(path, "learn2reg")
    assert [p["case"] for p in pairset.train] == ["OASIS_0001_0000__OASIS_0002_0000", "OASIS_0002_0000__OASIS_0003_0000"]
    assert all(p["fixed_labels"] and p["moving_labels"] for p in pairset.train)


def test_image_folders_split_by_subject(tmp_path: Path) -> None:
    for i in range(6):
        _nifti(tmp_path / "imagesTr" / f"sub{i}.nii.gz")
        _nifti(tmp_path / "labelsTr" / f"sub{i}.nii.gz", labels=True)
    pairset = discover_pairs(tmp_path)
    assert pairset.subjects is not None and len(pairset.train) == 30
    train, val = split_pairs(pairset, seed=3, val_fraction=0.3)
    val_subjects = {Path(p[k]).name for p in val for k in ("fixed", "moving")}
    train_subjects = {Path(p[k]).name for p in train for k in ("fixed", "moving")}
    assert len(val_subjects) == 2 and not val_subjects & train_subjects and len(train) == 4 * 3
    again, _ = split_pairs(pairset, seed=3, val_fraction=0.3)
    assert again == train


def test_oasis_subject_folders(tmp_path: Path) -> None:
    for i in range(3):
        folder = tmp_path / f"OASIS_OAS1_000{i}_MR1"
        _nifti(folder / "aligned_norm.nii.gz")
        _nifti(folder / ("aligned_seg35.nii.gz" if i else "aligned_seg4.nii.gz"), labels=True)
    pairset = discover_pairs(tmp_path)
    assert len(pairset.train) == 6
    labels = {Path(s["labels"]).name for s in pairset.subjects or []}
    assert labels == {"aligned_seg35.nii.gz", "aligned_seg4.nii.gz"}


def test_problems_are_named(tmp_path: Path) -> None:
    with pytest.raises(MedsegInputError, match="not found"):
        discover_pairs(tmp_path / "nothing")
    with pytest.raises(MedsegInputError, match="no pairs found"):
        discover_pairs(tmp_path)
    with pytest.raises(MedsegConfigError, match="unknown pair layout"):
        discover_pairs(tmp_path, "lits")
    _nifti(tmp_path / "imagesTr" / "only.nii.gz")
    with pytest.raises(MedsegInputError, match="at least 2 subjects"):
        discover_pairs(tmp_path)
    (tmp_path / "pairs.json").write_text("{not json")
    with pytest.raises(MedsegInputError, match="pairs.json"):
        discover_pairs(tmp_path)
