"""The output-path policy of prediction jobs (medseg.inference.jobs), checked without running a network."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.errors import MedsegInputError, MedsegOutputError
from medseg.inference.jobs import PredictRequest, prepare_job, resolve_model


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros((6, 6, 4), np.float32), np.eye(4)), str(path))
    return path


def test_one_case_to_a_file_puts_side_outputs_beside_it(tmp_path: Path) -> None:
    image = _image(tmp_path / "in" / "scan.nii.gz")
    out = tmp_path / "out" / "mask.nii.gz"
    job = prepare_job(PredictRequest((image,), out, tmp_path / "model", report=True, uncertainty=True,
                                     probabilities=tmp_path / "p.nii.gz", extras={"regions": tmp_path / "r.nii.gz"}))
    assert not job.batch and not job.to_folder and job.summary is None and [c.name for c in job.cases] == ["scan"]
    t = job.targets(job.cases[0])
    assert t.labels == out and t.dicom_seg is None
    assert (t.report, t.preview, t.uncertainty) == (out.with_name("mask.report.json"), out.with_name("mask.preview.png"), out.with_name("mask.entropy.nii.gz"))
    assert t.probabilities == tmp_path / "p.nii.gz" and t.extras == {"regions": tmp_path / "r.nii.gz"}


def test_one_case_to_a_folder_names_files_by_case(tmp_path: Path) -> None:
    image = _image(tmp_path / "scan.nii.gz")
    job = prepare_job(PredictRequest((image,), tmp_path / "out", tmp_path / "model", stats=tmp_path / "s.json",
                                     extras={"regions": tmp_path / "regions"}))
    t = job.targets(job.cases[0])
    assert job.to_folder and (tmp_path / "out").is_dir() and t.labels == tmp_path / "out" / "scan.nii.gz"
    assert t.report is None and t.preview is None  # reports are off for one case unless asked
    assert t.stats == tmp_path / "s.json"  # an optional output of one case is the file given, also with a folder output
    assert t.extras == {"regions": tmp_path / "regions" / "scan.nii.gz"}


def test_batch_uses_folders_for_every_output(tmp_path: Path, tiny_model: Path) -> None:
    cases = tmp_path / "cases"
    for name in ("a", "b"):
        _image(cases / f"{name}.nii.gz")
    job = prepare_job(PredictRequest((cases,), tmp_path / "out", tiny_model, preview=tmp_path / "png", extras={"regions": tmp_path / "reg"}))
    assert job.batch and [c.name for c in job.cases] == ["a", "b"] and job.summary == tmp_path / "out" / "summary.csv"
    t = job.targets(job.cases[1])
    assert (t.labels, t.report, t.preview) == (tmp_path / "out" / "b.nii.gz", tmp_path / "out" / "b.report.json", tmp_path / "png" / "b.png")
    assert t.extras == {"regions": tmp_path / "reg" / "b.nii.gz"}
    assert all((tmp_path / d).is_dir() for d in ("out", "png", "reg"))
    with pytest.raises(MedsegInputError, match="does not apply to a batch"):
        prepare_job(PredictRequest((cases,), tmp_path / "out", tiny_model, series_uid="1.2"))


def test_a_named_case_is_never_a_batch(tmp_path: Path) -> None:
    """The gateway's request: a folder input with ``case_name`` is one case (its outputs ``series.*``)."""
    folder = tmp_path / "series"
    _image(folder / "x.nii.gz")
    job = prepare_job(PredictRequest((folder,), tmp_path / "out", tmp_path / "model", output_format="both", report=True, force=True, case_name="series"))
    t = job.targets(job.cases[0])
    assert not job.batch and job.cases[0].dicom
    assert (t.dicom_seg, t.labels, t.report) == (tmp_path / "out" / "series.seg.dcm", tmp_path / "out" / "series.nii.gz", tmp_path / "out" / "series.report.json")


def test_checks_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = _image(tmp_path / "scan.nii.gz")
    (tmp_path / "taken.nii.gz").write_bytes(b"old")
    with pytest.raises(MedsegOutputError, match="--force"):
        prepare_job(PredictRequest((image,), tmp_path / "taken.nii.gz", tmp_path / "model"))
    with pytest.raises(MedsegInputError, match="needs a DICOM series"):
        prepare_job(PredictRequest((image,), tmp_path / "x.dcm", tmp_path / "model"))
    with pytest.raises(MedsegOutputError, match="image extension"):
        prepare_job(PredictRequest((image,), tmp_path / "y.nii.gz", tmp_path / "model", extras={"regions": tmp_path / "r.txt"}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.nii.gz", "taken.nii.gz"]
    monkeypatch.setenv("MEDSEG_MODELS", str(tmp_path))
    (tmp_path / "liver").mkdir()
    assert resolve_model(Path("liver")) == tmp_path / "liver" and resolve_model(Path("nope")) == Path("nope")
