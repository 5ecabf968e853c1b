"""Domain mismatch is never silent: the package records its training data, ``predict`` warns outside it
(console line, summary.csv, report), and ``--strict`` makes a warning an error with no output."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.model.domain import TrainingData, channel_percentiles, domain_warnings, spacing_warning
from medseg.model.package import read_manifest
from tests.conftest import run_cli

WHOLE = "intensities of the whole image lie outside the training data's"


@pytest.fixture(scope="module")
def mni_t1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MNI152 T1 template (an MR brain) at 2 mm, as nilearn ships it (no download)."""
    from nilearn.datasets import load_mni152_template

    path = tmp_path_factory.mktemp("mni") / "mni.nii.gz"
    nib.save(load_mni152_template(resolution=2), str(path))
    return path


def test_package_records_what_it_was_trained_on(tiny_model: Path) -> None:
    data = read_manifest(tiny_model).training_data
    assert data is not None and data.cases == 3 and data.modalities == ["CT"] and data.intensity_units == "raw"
    assert all(0 < lo <= hi for lo, hi in data.spacing)
    whole, fg = data.channels[0].whole, data.channels[0].foreground
    assert whole.p1[0] < -900  # the phantom's air, in HU
    assert fg is not None and 0 < fg.p50[0] <= fg.p50[1] < 200  # soft tissue


def test_mr_brain_into_a_ct_model_warns_on_the_console_and_in_the_summary(tmp_path: Path, tiny_run: Path, tiny_model: Path, mni_t1: Path) -> None:
    cases = tmp_path / "cases"
    cases.mkdir()
    shutil.copy(mni_t1, cases / "brain.nii.gz")
    ct = next((tiny_run / "data" / "imagesTs").glob("*.nii.gz"))
    shutil.copy(ct, cases / ct.name)
    result = run_cli("predict", "-i", str(cases), "-o", str(tmp_path / "out"), "-m", str(tiny_model), "-q")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert any(line.startswith(f"warning: {cases / 'brain.nii.gz'}: {WHOLE}") for line in warnings), result.stderr
    assert not any(ct.name in line and "training data" in line for line in warnings), warnings  # in-domain CT: no domain warning
    rows = {r["case"]: r for r in csv.DictReader((tmp_path / "out" / "summary.csv").open())}
    assert WHOLE in rows["brain"]["warnings"] and "p1 0 " in rows["brain"]["warnings"]
    assert "training data" not in rows[ct.name.removesuffix(".nii.gz")]["warnings"]
    report = json.loads((tmp_path / "out" / "brain.report.json").read_text())
    assert any(WHOLE in w for w in report["warnings"])  # one path feeds console, summary and report


def test_strict_makes_a_warning_an_error_and_writes_nothing(tmp_path: Path, tiny_model: Path, mni_t1: Path) -> None:
    out = tmp_path / "brain_seg.nii.gz"
    result = run_cli("predict", "-i", str(mni_t1), "-o", str(out), "-m", str(tiny_model), "-q", "--strict", "--report")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {mni_t1}: {WHOLE}") and "--strict" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def _profile(spacing: tuple[tuple[float, float], ...], units: str = "raw") -> TrainingData:
    ranges = {"p1": (-1000.0, -990.0), "p50": (-100.0, 50.0), "p99": (400.0, 600.0)}
    return TrainingData.model_validate({"cases": 2, "modalities": ["CT"], "spacing": spacing, "intensity_units": units,
                                        "channels": [{"whole": ranges, "foreground": {"p1": (0, 10), "p50": (40, 80), "p99": (100, 150)}}]})


def test_voxel_size_far_from_the_training_range_warns() -> None:
    profile = _profile(((0.7, 0.9), (0.7, 0.9), (2.5, 5.0)))
    assert spacing_warning((0.8, 0.8, 3.0), profile, None) is None
    assert spacing_warning((5.0, 0.8, 0.8), profile, None) is None  # axes compared sorted
    note = spacing_warning((2.0, 2.0, 2.0), profile, None)
    assert note is not None and "2x2x2 mm is far from the training data's 0.7-0.9 x 0.7-0.9 x 2.5-5 mm" in note
    assert spacing_warning((1.0, 1.0, 1.0), None, (2.0, 2.0, 3.0)) is not None  # a package without a profile: its target spacing
    assert spacing_warning((1.0, 1.0, 1.0), None, None) is None


def test_intensity_margin_and_foreground_median() -> None:
    rng = np.random.default_rng(0)
    image = np.concatenate([np.full(400, -1000.0), rng.normal(0, 100, 500), np.full(100, 60.0)]).reshape(10, 10, 10)
    labels = (image == 60.0).astype(np.uint8)
    found = channel_percentiles(image, labels, "raw")
    ranges = {region: {k: (v - 5, v + 5) for k, v in found[region].items()} for region in ("whole", "foreground")}  # type: ignore[union-attr]
    profile = TrainingData.model_validate({"cases": 2, "modalities": ["CT"], "spacing": ((0.7, 0.9),) * 3, "intensity_units": "raw", "channels": [ranges]})
    assert domain_warnings(image[None], labels, (0.8, 0.8, 0.8), profile, None) == []
    span = found["whole"]["p99"] - found["whole"]["p1"]  # type: ignore[index]
    assert domain_warnings(image[None] + 0.1 * span, labels, (0.8, 0.8, 0.8), profile, None) == []  # inside the 10 % margin
    notes = domain_warnings(image[None] + 500, labels, (0.8, 0.8, 0.8), profile, None, [Path("a.nii.gz")])
    assert [p for p, _ in notes] == [Path("a.nii.gz"), Path("a.nii.gz")]
    assert WHOLE in notes[0][1] and "foreground" in notes[1][1] and "p50 560" in notes[1][1]


def test_relative_units_ignore_the_scanner_scale() -> None:
    image = np.random.default_rng(1).gamma(2.0, 100.0, size=(8, 8, 8))
    a, b = channel_percentiles(image, image > 300, "relative"), channel_percentiles(image * 7 + 3, image > 300, "relative")
    assert a["foreground"] is not None and b["foreground"] is not None
    assert np.allclose(list(a["whole"].values()), list(b["whole"].values()), atol=1e-4)  # type: ignore[union-attr]
    assert np.allclose(list(a["foreground"].values()), list(b["foreground"].values()), atol=1e-4)
