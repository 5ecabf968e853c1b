"""``medseg predict`` on DICOM series, its outputs checked by tools we did not write: dciodvfy (dicom3tools)
on the DICOM SEG, dcm2niix and SimpleITK (ITK) on the geometry of the NIfTI label map and of the SEG."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom.data
import pytest

from medseg.io.dicom_write import write_dicom_series
from medseg.io.geometry import Geometry, reorient
from medseg.io.image_io import read_image
from tests.conftest import run_medseg
from tests.external_tools import canonical, check_itk_reads, dciodvfy, dcm2niix, needs_dciodvfy, needs_dcm2niix
from tests.io.test_external_tools import check_seg_with_dcm2niix

CT5 = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent / "dicomdirtests" / "98892001" / "CT5N"  # real CT, 5 slices


@pytest.fixture(scope="module")
def predicted(tiny_run: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """``{source: (series folder, output folder)}`` after ``medseg predict --output-format both`` on each series:
    the held-out phantom stored feet first (LAI: slice positions fall, rows run anterior) and pydicom's real CT."""
    root = tmp_path_factory.mktemp("clinic_external")
    array, geometry = read_image(next((tiny_run / "data" / "imagesTs").glob("*.nii.gz")))
    array, affine = reorient(np.rint(array), geometry.affine, "LAI")
    write_dicom_series(root / "phantom", array, Geometry(array.shape, affine), seed="external")
    runs = {}
    for name, series in (("phantom", root / "phantom"), ("real CT", CT5)):
        out = root / ("out_" + name.replace(" ", "_"))
        assert run_medseg("predict", "-i", str(series), "-o", str(out / "case.nii.gz"), "-m", str(tiny_model), "--device", "cpu",
                          "--output-format", "both", "-q") == 0
        runs[name] = (series, out)
    return runs


@needs_dciodvfy
@pytest.mark.parametrize("source", ["phantom", "real CT"])
def test_predicted_seg_passes_dciodvfy(predicted: dict[str, tuple[Path, Path]], source: str) -> None:
    verdict = dciodvfy(predicted[source][1] / "case.seg.dcm")
    assert (verdict.iod, verdict.errors, verdict.warnings) == ("Segmentation", [], [])


@needs_dcm2niix
@pytest.mark.parametrize("source", ["phantom", "real CT"])
def test_predicted_nifti_has_the_grid_dcm2niix_gives_the_series(predicted: dict[str, tuple[Path, Path]], source: str, tmp_path: Path) -> None:
    series, out = predicted[source]
    reference, _ = dcm2niix(series, tmp_path)
    labels = nib.load(out / "case.nii.gz")
    assert labels.shape == reference.shape
    _, ours = canonical(np.asarray(labels.dataobj), labels.affine)
    _, theirs = canonical(reference.get_fdata(), reference.affine)
    np.testing.assert_allclose(ours, theirs, atol=1e-3, rtol=0)
    # and the SEG, converted by dcm2niix, holds the NIfTI's labels on that grid
    labels, geometry = read_image(out / "case.nii.gz", "label")
    assert source == "real CT" or (labels == 1).any()  # the phantom's organ is found: the check sees segments
    check_seg_with_dcm2niix(out / "case.seg.dcm", labels, geometry, [1, 2], tmp_path / "seg")


@pytest.mark.parametrize("source", ["phantom", "real CT"])
def test_simpleitk_reads_the_predicted_nifti_with_its_geometry(predicted: dict[str, tuple[Path, Path]], source: str) -> None:
    path = predicted[source][1] / "case.nii.gz"
    labels, geometry = read_image(path, "label")
    check_itk_reads(path, labels, geometry)
