"""``medseg check`` and ``medseg info`` read what ``predict`` reads: image files, a DICOM series folder (real
CT series pydicom ships, read in place), a folder of cases, a list file; ``info`` lists a label map's values."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom.data
import pytest


from tests.conftest import run_medseg_captured

PYDICOM_DATA = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent
CT5 = PYDICOM_DATA / "dicomdirtests" / "98892001" / "CT5N"  # a real 5-slice CT series (16x16, 2.5 mm)


medseg = run_medseg_captured


def _nifti(path: Path, array: np.ndarray, zooms: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Path:
    nib.save(nib.Nifti1Image(array, np.diag([*zooms, 1.0])), str(path))
    return path


def test_info_and_check_read_a_dicom_series_folder(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = medseg(capsys, "info", str(CT5), "--json")
    facts = json.loads(out)
    assert code == 0 and facts["dicom"]["slices"] == 5 and facts["dicom"]["modality"] == "CT" and len(facts["shape"]) == 3
    code, out, _ = medseg(capsys, "info", str(CT5))
    assert code == 0 and "dicom:       series" in out and "(CT, 5 slices)" in out
    code, out, _ = medseg(capsys, "check", str(CT5))
    assert code == 0 and out.strip() == "ok: 5 file(s) checked, no problems"


def test_check_names_the_broken_file_of_a_series(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    series = tmp_path / "series"
    shutil.copytree(CT5, series)
    victim = sorted(series.iterdir())[-1]
    victim.write_bytes(victim.read_bytes()[:-200])  # cut into the pixel data
    code, out, _ = medseg(capsys, "check", str(series))
    assert code == 1 and victim.name in out and "-> fix:" in out


def test_check_and_info_read_a_folder_of_cases_and_a_list_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = tmp_path / "cases"
    cases.mkdir()
    _nifti(cases / "a.nii.gz", np.random.default_rng(0).normal(size=(8, 8, 8)).astype(np.float32))
    _nifti(cases / "b.nii.gz", np.full((8, 8, 8), np.nan, np.float32))
    code, out, _ = medseg(capsys, "check", str(cases))
    assert code == 1 and f"{cases / 'b.nii.gz'}:" in out and "a.nii.gz" not in out  # a folder of cases, not a dataset
    listing = tmp_path / "cases.txt"
    listing.write_text(f"cases/a.nii.gz\n{CT5}\n")
    code, out, _ = medseg(capsys, "check", str(listing))
    assert code == 0 and "6 file(s) checked" in out
    code, out, _ = medseg(capsys, "info", str(listing), "--json")
    facts = json.loads(out)
    assert code == 0 and [f["file"] for f in facts] == [str(cases / "a.nii.gz"), str(CT5)]


def test_check_of_a_missing_file_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = medseg(capsys, "check", str(tmp_path / "nope.nii.gz"))
    assert code == 1 and "nope.nii.gz: file not found -> fix: check the path" in out and "re-export" not in out
    code, _, err = medseg(capsys, "info", str(tmp_path / "nope.nii.gz"))
    assert code == 1 and err.strip() == f"error: {tmp_path / 'nope.nii.gz'}: file not found"


def test_info_lists_the_values_of_a_label_map(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[:2] = 1
    labels[5, 5, 5] = 7
    path = _nifti(tmp_path / "seg.nii.gz", labels, (2.0, 2.0, 2.5))  # 10 ml per 1000 voxels
    code, out, _ = medseg(capsys, "info", str(path), "--json")
    assert code == 0 and json.loads(out)["labels"] == {
        "0": {"voxels": 799, "volume_ml": 7.99}, "1": {"voxels": 200, "volume_ml": 2.0}, "7": {"voxels": 1, "volume_ml": 0.01}}
    code, out, _ = medseg(capsys, "info", str(path))
    assert "labels:      value  voxels  volume (ml)" in out and "       7       1  0.01" in out
    image = _nifti(tmp_path / "ct.nii.gz", np.random.default_rng(1).normal(0, 100, (10, 10, 10)).astype(np.float32))
    code, out, _ = medseg(capsys, "info", str(image), "--json")
    assert code == 0 and json.loads(out)["labels"] is None  # an image is not a label map
