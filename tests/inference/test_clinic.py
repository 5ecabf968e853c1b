"""Clinic path of ``medseg predict``: DICOM in, DICOM SEG out, reports, uncertainty, batch mode, selfcheck."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom.data
import pytest
import torch

from medseg.model.package import load_model_package, sha256_file
from medseg.inference.batch import PHASES
from medseg.inference.outputs import label_statistics
from medseg.inference.predictor import Predictor
from medseg.io.dicom import read_dicom_series
from medseg.io.dicom_write import write_dicom_series
from medseg.io.geometry import Geometry, reorient
from medseg.io.image_io import read_image, write_image

from tests.conftest import run_cli, run_medseg



@pytest.fixture(scope="module")
def phantom(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The held-out phantom as integer-valued LPS NIfTI and as a DICOM series of the same voxels."""
    root = tmp_path_factory.mktemp("clinic")
    array, geometry = read_image(next((tiny_run / "data" / "imagesTs").glob("*.nii.gz")))
    array, affine = reorient(np.rint(array), geometry.affine, "LPS")  # integers: the DICOM stores them exactly
    nifti = write_image(root / "phantom.nii.gz", array, Geometry(array.shape, affine), "image")
    array, geometry = read_image(nifti)
    write_dicom_series(root / "series", array, geometry, seed="clinic")
    return {"root": root, "nifti": nifti, "series": root / "series"}


def test_dicom_in_seg_out_report_and_uncertainty(phantom: dict[str, Path], tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "case.nii.gz"
    code = run_medseg("predict", "-i", str(phantom["series"]), "-o", str(out), "-m", str(tiny_model), "--device", "cpu",
                  "--output-format", "both", "--report", "--uncertainty", "-q")
    assert code == 0
    folder = out.parent
    assert sorted(p.name for p in folder.iterdir()) == [
        "case.entropy.nii.gz", "case.nii.gz", "case.preview.png", "case.report.json", "case.seg.dcm"]

    # the DICOM path gives the NIfTI path's geometry and prediction
    labels, label_geometry = read_image(out, "label")
    _, nifti_geometry = read_image(phantom["nifti"])
    assert nifti_geometry.mismatch(label_geometry) is None
    predictor = Predictor(load_model_package(tiny_model), torch.device("cpu"), backend="auto")  # the CLI's default backend
    np.testing.assert_array_equal(labels, predictor.predict_files([phantom["nifti"]]).labels)

    # the SEG's frames are the label map's slices, on the source instances
    _, _, series = read_dicom_series(phantom["series"])
    seg = hd.seg.segread(folder / "case.seg.dcm")
    assert [seg.get_segment_description(n).segment_label for n in seg.get_segment_numbers()] == ["organ", "lesion"]
    frames = seg.get_pixels_by_source_instance(list(series.sop_instance_uids), segment_numbers=[1, 2], combine_segments=True)
    np.testing.assert_array_equal(np.transpose(frames, (2, 1, 0)), labels)

    # the report agrees with the files
    report = json.loads((folder / "case.report.json").read_text())
    assert report["input"]["count"] == len(series.files)
    digests = [sha256_file(f) for f in series.files]
    assert [f["sha256"] for f in report["input"]["files"]] == digests
    assert report["input"]["sha256"] == hashlib.sha256("".join(digests).encode()).hexdigest()
    assert report["input"]["geometry"]["shape"] == list(labels.shape)
    assert report["input"]["dicom"]["series_instance_uid"] == series.uid
    assert report["model"]["name"] == "tiny" and report["model"]["weights_sha256"] == sha256_file(tiny_model / "model.safetensors")
    assert {"medseg", "torch", "monai"} <= set(report["versions"]) and report["device"]["name"] == "cpu"
    assert list(report["seconds"]) == list(PHASES) and all(v >= 0 for v in report["seconds"].values())
    assert report["seconds"]["total"] >= sum(report["seconds"][p] for p in ("read", "network", "write")) * 0.99
    assert report["peak_memory"]["rss_mb"] > 50
    expected = label_statistics(labels, label_geometry, {0: "background", 1: "organ", 2: "lesion"})
    # the report's geometry comes from the DICOM headers: volumes agree to rounding, voxel counts exactly
    assert report["labels"]["labels"].keys() == {str(k) for k in expected["labels"]}
    for value, entry in expected["labels"].items():
        got = report["labels"]["labels"][str(value)]
        assert (got["name"], got["voxels"]) == (entry["name"], entry["voxels"])
        assert got["volume_ml"] == pytest.approx(entry["volume_ml"], abs=1e-3)
    assert report["labels"]["voxel_volume_ml"] == pytest.approx(expected["voxel_volume_ml"], rel=1e-6)
    assert {Path(p).name for p in report["outputs"].values()} == {"case.nii.gz", "case.seg.dcm", "case.entropy.nii.gz", "case.preview.png"}
    assert isinstance(report["warnings"], list)

    # the entropy map: input geometry, values in [0, 1], per-label means that match it
    entropy, entropy_geometry = read_image(folder / "case.entropy.nii.gz")
    assert nifti_geometry.mismatch(entropy_geometry) is None
    assert 0.0 <= entropy.min() and entropy.max() <= 1.0
    for value, entry in report["uncertainty"]["labels"].items():
        mask = labels == int(value)
        assert entry["voxels"] == int(mask.sum())
        if mask.any():
            assert entry["mean_entropy"] == pytest.approx(float(entropy[mask].mean()), abs=1e-4)


def test_batch_goes_on_after_a_bad_case_and_skips_finished_ones(phantom: dict[str, Path], tiny_model: Path, tmp_path: Path) -> None:
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "good.nii.gz").write_bytes(phantom["nifti"].read_bytes())
    (cases / "broken.nii.gz").write_bytes(phantom["nifti"].read_bytes()[:2000])  # truncated
    (cases / "scan").symlink_to(phantom["series"], target_is_directory=True)  # a DICOM series sub-folder
    out = tmp_path / "out"
    result = run_cli("predict", "-i", str(cases), "-o", str(out), "-m", str(tiny_model), "--device", "cpu", "-q")
    assert result.returncode == 1
    assert "error: case broken:" in result.stderr and "truncated or corrupt" in result.stderr
    rows = {r["case"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert {c: r["status"] for c, r in rows.items()} == {"broken": "failed", "good": "ok", "scan": "ok"}
    assert "broken.nii.gz" in rows["broken"]["error"] and rows["good"]["error"] == ""
    assert float(rows["good"]["volume_ml_organ"]) == pytest.approx(float(rows["scan"]["volume_ml_organ"]), rel=1e-5)
    assert all(float(rows["good"][f"{p}_s"]) >= 0 for p in PHASES)
    assert not any(p.name.startswith("broken") for p in out.iterdir())
    for case in ("good", "scan"):  # reports and previews are on by default in batch mode
        assert (out / f"{case}.nii.gz").is_file() and (out / f"{case}.preview.png").is_file()
        report = json.loads((out / f"{case}.report.json").read_text())
        assert str(report["labels"]["labels"]["1"]["volume_ml"]) == rows[case]["volume_ml_organ"]
    assert stat.S_IMODE((out / "good.nii.gz").stat().st_mode) == 0o666 & ~_umask()

    # again: finished cases are skipped, the bad one fails again
    before = (out / "good.nii.gz").stat().st_mtime_ns
    assert run_medseg("predict", "-i", str(cases), "-o", str(out), "-m", str(tiny_model), "--device", "cpu", "-q") == 1
    rows = {r["case"]: r["status"] for r in csv.DictReader((out / "summary.csv").open())}
    assert rows == {"broken": "failed", "good": "skipped", "scan": "skipped"}
    assert (out / "good.nii.gz").stat().st_mtime_ns == before

    # a list file of the good cases with --force: redone, exit 0
    listing = tmp_path / "cases.txt"
    listing.write_text(f"# good ones\n{cases / 'good.nii.gz'}\n\ncases/scan\n")
    assert run_medseg("predict", "-i", str(listing), "-o", str(out), "-m", str(tiny_model), "--device", "cpu", "-q", "--force") == 0
    rows = {r["case"]: r["status"] for r in csv.DictReader((out / "summary.csv").open())}
    assert rows == {"good": "ok", "scan": "ok"}
    assert (out / "good.nii.gz").stat().st_mtime_ns != before


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_clear_errors_before_any_work(phantom: dict[str, Path], tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def error(*args: str) -> str:
        assert run_medseg("predict", *args, "-m", str(tiny_model), "-q") != 0
        return capsys.readouterr().err

    assert "needs a DICOM series folder" in error("-i", str(phantom["nifti"]), "-o", str(tmp_path / "x.dcm"))
    assert "expected one of nifti, dicom-seg, both" in error("-i", str(phantom["series"]), "-o", str(tmp_path / "x.nii.gz"), "--output-format", "rtstruct")
    assert "does not apply to a batch" in error("-i", str(phantom["root"]), "-o", str(tmp_path / "o"), "--series-uid", "1.2")
    assert "has no series 1.2" in error("-i", str(phantom["series"]), "-o", str(tmp_path / "y.nii.gz"), "--series-uid", "1.2")
    assert not list(tmp_path.iterdir())


def test_model_by_name_and_selfcheck(phantom: dict[str, Path], tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MEDSEG_MODELS", str(tiny_model.parent))
    assert run_medseg("predict", "-i", str(phantom["nifti"]), "-o", str(tmp_path / "p.nii.gz"), "-m", tiny_model.name, "--device", "cpu", "-q") == 0
    capsys.readouterr()
    assert run_medseg("selfcheck", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] and result["device"]["reason"] == "CUDA not available: running on CPU" or torch.cuda.is_available()
    assert [m["name"] for m in result["models"]] == ["tiny"] and result["models"][0]["ok"]
    assert result["versions"]["medseg"] and result["scratch"]["writable"]

    broken = tmp_path / "models" / "broken"
    broken.mkdir(parents=True)
    (broken / "medseg.json").write_text((tiny_model / "medseg.json").read_text())
    (broken / "model.safetensors").write_bytes(b"not weights")
    assert run_medseg("selfcheck", "-m", str(tmp_path / "models"), "--json") == 1
    result = json.loads(capsys.readouterr().out)
    assert not result["ok"] and "broken" in result["problems"][0]


def test_console_names_the_series_used_and_what_was_ignored(phantom: dict[str, Path], tiny_model: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A study folder as a PACS exports it: the phantom series, a real CT series of pydicom's, a DICOMDIR, a README."""
    real = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent / "dicomdirtests"
    study = tmp_path / "study"
    study.mkdir()
    for f in phantom["series"].iterdir():
        shutil.copy(f, study / f.name)
    for f in (real / "98892001" / "CT5N").iterdir():  # 5 slices: fewer than the phantom's, so ignored
        shutil.copy(f, study / f.name)
    shutil.copy(real / "DICOMDIR", study / "DICOMDIR")
    (study / "README.TXT").write_text("exported by a PACS\n")
    _, _, used = read_dicom_series(phantom["series"])
    other = pydicom.dcmread(next((real / "98892001" / "CT5N").iterdir()), stop_before_pixels=True)

    out = tmp_path / "out" / "case.nii.gz"
    assert run_medseg("predict", "-i", str(study), "-o", str(out), "-m", str(tiny_model), "--device", "cpu") == 0
    err = capsys.readouterr().err
    assert f"study: used series {used.uid} 'medseg phantom' (CT, {used.n_slices} slices)" in err
    assert f"study: ignored series {other.SeriesInstanceUID} 'SmartScore - Gated 0.5 sec' (CT, 5 files)" in err
    assert "study: ignored 2 file(s) that are no image of a series: DICOMDIR (a DICOMDIR (index of a DICOM medium)), README.TXT (not a DICOM file)" in err
    assert read_image(out, "label")[1].shape[2] == used.n_slices


def test_truncated_last_slice_fails_the_case_without_output(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent / "dicomdirtests" / "98892001" / "CT5N"
    series = tmp_path / "ct"
    series.mkdir()
    files = sorted((Path(shutil.copy(f, series / f.name)) for f in source.iterdir()),
                   key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))
    files[-1].write_bytes(files[-1].read_bytes()[:-100])  # the top slice, cut mid-pixel-data
    out = tmp_path / "out"
    assert run_medseg("predict", "-i", str(series), "-o", str(out / "case.nii.gz"), "-m", str(tiny_model), "--device", "cpu", "-q") == 1
    assert f"error: {files[-1]}: truncated DICOM file: pixel data has 412 of 512 bytes" in capsys.readouterr().err
    assert not out.exists() or not list(out.iterdir())
