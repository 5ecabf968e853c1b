"""medseg's DICOM checked by tools we did not write: dciodvfy (dicom3tools) on every DICOM object medseg
writes, dcm2niix against medseg's DICOM reader on geometry, SimpleITK (ITK) on medseg's NIfTI files.

dciodvfy prints ``Error - ...`` for what the IOD forbids or lacks and ``Warning - ...`` for what is legal
but odd. No error is accepted; the warnings accepted are listed with the reason each is acceptable.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest

from medseg.io.dicom import read_dicom_series
from medseg.io.dicom_seg import write_dicom_seg
from medseg.io.dicom_write import write_dicom_series
from medseg.io.geometry import LPS_TO_RAS, Geometry
from medseg.io.image_io import read_image, write_image
from tests.external_tools import canonical, check_itk_reads, dciodvfy, dcm2niix, needs_dciodvfy, needs_dcm2niix, unexpected_warnings

CT5 = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent / "dicomdirtests" / "98892001" / "CT5N"  # real CT, 5 slices

#: dciodvfy warnings accepted on the phantom series, each with why.
ACCEPTED_SERIES_WARNINGS = {
    # An MR phantom with non-integer intensities: the classic MR Image IOD has no Modality LUT, but int16 pixels
    # cannot hold them otherwise; Rescale Slope/Intercept in MR is a Standard Extended SOP Class (PS3.4 B.1.3), as
    # Philips scanners write it, and GDCM/SimpleITK and dcm2niix apply it (checked below). Integer MR has none.
    r"Modality LUT Module \(RescaleSlope and RescaleIntercept\) not expected to be present in standard MR IOD": "non-integer MR phantom",
    r"Attribute is not present in standard DICOM IOD - \(0x0028,0x105[23]\) DS Rescale": "non-integer MR phantom",
    r"this is a Standard Extended SOP Class": "non-integer MR phantom: Rescale Slope/Intercept only",
}


def lps_geometry(shape: tuple[int, int, int], columns: np.ndarray, spacing: tuple[float, float, float], origin: tuple[float, float, float]) -> Geometry:
    """A geometry from LPS direction cosines (columns: i = along a row, j = down a column, k = slice normal)."""
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(columns, dtype=np.float64) * np.asarray(spacing)
    lps[:3, 3] = origin
    return Geometry(shape, LPS_TO_RAS @ lps)


def rotation(x_deg: float, y_deg: float, z_deg: float) -> np.ndarray:
    """Rotation about x, then y, then z (degrees)."""
    out = np.eye(3)
    for axis, deg in ((0, x_deg), (1, y_deg), (2, z_deg)):
        c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
        i, j = (a for a in range(3) if a != axis)
        r = np.eye(3)
        r[i, i] = r[j, j] = c
        r[i, j], r[j, i] = -s, s
        out = r @ out
    return out


#: Phantom grids (LPS columns: row direction, column direction, slice normal), anisotropic voxels, odd origins.
GRIDS = {
    "axial": (np.eye(3), (0.7, 0.9, 2.5), (10.0, 20.0, -30.0)),  # LPS: the usual scanner axial
    "axial_toward_right": (np.diag([-1.0, -1.0, 1.0]), (0.8, 1.2, 3.0), (5.0, -7.0, 12.0)),  # RAS voxel order
    "descending": (np.diag([-1.0, 1.0, -1.0]), (1.1, 0.6, 2.0), (-3.0, 4.0, 50.0)),  # slice positions fall (feet first)
    "coronal": (np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]), (0.7, 1.7, 2.4), (-50.0, 10.0, 80.0)),
    "sagittal": (np.array([[0.0, 0, -1], [1, 0, 0], [0, -1, 0]]), (0.9, 1.3, 2.2), (1.0, 2.0, 3.0)),
    "oblique": (rotation(17, -23, 31), (0.75, 1.1, 2.6), (-12.5, 33.3, 7.7)),
    "oblique_steep": (rotation(62, 0, -48), (0.5, 0.8, 3.3), (100.0, -40.0, 7.0)),  # closest axes change
}


def phantom_series(folder: Path, grid: str = "oblique", modality: str = "CT", integer: bool = True, seed: int = 0) -> Geometry:
    """Write a 9x7x5 phantom series on one of :data:`GRIDS`; returns the geometry it was written with."""
    columns, spacing, origin = GRIDS[grid]
    geometry = lps_geometry((9, 7, 5), columns, spacing, origin)
    rng = np.random.default_rng(seed)
    array = rng.integers(-1000, 1000, geometry.shape).astype(np.float64) if integer else rng.normal(0, 300, geometry.shape)
    array[1:4, 2:6, 1:3] += 1500  # asymmetric: a flipped or transposed read would not match
    write_dicom_series(folder, array, geometry, modality=modality, seed=f"{grid}{modality}{seed}")
    return geometry


@needs_dciodvfy
@pytest.mark.parametrize(("modality", "integer"), [("CT", True), ("CT", False), ("MR", True), ("MR", False)])
def test_phantom_series_pass_dciodvfy(tmp_path: Path, modality: str, integer: bool) -> None:
    phantom_series(tmp_path / "s", "oblique", modality, integer)
    for path in sorted((tmp_path / "s").iterdir()):
        verdict = dciodvfy(path)
        assert verdict.iod == f"{modality}Image" and verdict.errors == [], (path.name, verdict)
        if modality == "CT" or integer:  # nothing to excuse: every warning is a finding
            assert verdict.warnings == [], (path.name, verdict)
        assert unexpected_warnings(verdict, ACCEPTED_SERIES_WARNINGS) == [], (path.name, verdict)


@needs_dciodvfy
@pytest.mark.parametrize("source", ["MR phantom", "real CT"])
def test_dicom_seg_passes_dciodvfy(tmp_path: Path, source: str) -> None:
    if source == "real CT":
        folder = CT5
    else:
        folder = tmp_path / "s"
        phantom_series(folder, "sagittal", "MR", integer=False)
    array, _, series = read_dicom_series(folder)
    labels = (array > np.median(array)).astype(np.uint8)  # label 2 stays empty: an empty segment is written too
    path = write_dicom_seg(tmp_path / "x.seg.dcm", labels, series, {0: "background", 1: "organ", 2: "lesion"}, "tiny", "1")
    verdict = dciodvfy(path)
    assert (verdict.iod, verdict.errors, verdict.warnings) == ("Segmentation", [], [])


ALTERED = {"reversed instance numbers", "per-slice rescale"}  # on the oblique grid, files altered after writing


@needs_dcm2niix
@pytest.mark.parametrize("grid", [*GRIDS, *sorted(ALTERED), "real CT"])
def test_dcm2niix_agrees_with_the_dicom_reader(tmp_path: Path, grid: str) -> None:
    """Same voxels at the same world positions (compared in RAS+ after both go to the closest canonical order)."""
    truth = None
    if grid == "real CT":
        folder = CT5
    else:
        folder = tmp_path / "s"
        truth = phantom_series(folder, "oblique" if grid in ALTERED else grid, integer=grid != "oblique_steep")
        for k, path in enumerate(sorted(folder.iterdir()) if grid in ALTERED else []):
            ds = pydicom.dcmread(path)
            if grid == "reversed instance numbers":  # instance numbers fall while positions rise: order is by position
                ds.InstanceNumber = 5 - k
            elif k == 4:  # values beyond int16 (up to 40000), as in PET or scaled MR
                ds.RescaleSlope = "40"
            elif k:  # each slice its own Rescale Slope/Intercept (as Philips writes), the first one identity
                slope, intercept = 0.5 + 0.37 * k, -100.0 * k
                ds.PixelData = np.rint((ds.pixel_array - intercept) / slope).astype(np.int16).tobytes()
                ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.6g}", f"{intercept:.6g}"
            ds.save_as(path)
    array, geometry, _ = read_dicom_series(folder)
    if truth is not None:  # medseg reads the grid the series was written on
        assert truth.mismatch(geometry, atol=1e-4) is None
    reference, warnings = dcm2niix(folder, tmp_path / "nii")
    if truth is not None:  # nothing in our series puzzles dcm2niix (before: "Patient Position (0018,5100) not specified")
        assert warnings == []
    ours_array, ours_affine = canonical(array, geometry.affine)
    ref_array, ref_affine = canonical(reference.get_fdata(), reference.affine)
    assert ref_array.shape == ours_array.shape
    np.testing.assert_allclose(ours_affine, ref_affine, atol=1e-3, rtol=0)
    np.testing.assert_allclose(ours_array, ref_array, atol=1e-5 * max(1.0, float(np.abs(ref_array).max())), rtol=0)  # float32


@pytest.mark.parametrize("grid", ["axial", "descending", "sagittal", "oblique_steep"])
def test_simpleitk_reads_our_nifti_with_our_geometry(tmp_path: Path, grid: str) -> None:
    """ITK's origin, spacing and direction (LPS) are nibabel's affine with x and y negated."""
    geometry = phantom_series(tmp_path / "s", grid)  # only for the grid; the NIfTI is written directly
    array = np.random.default_rng(1).integers(0, 3, geometry.shape).astype(np.uint8)
    path = write_image(tmp_path / "labels.nii.gz", array, geometry, "label")
    _, read = read_image(path, "label")
    check_itk_reads(path, array, read)
    assert geometry.mismatch(read, atol=1e-4) is None


#: dcm2niix warnings accepted on our DICOM SEG, each with why.
ACCEPTED_SEG_DCM2NIIX_WARNINGS = {
    # Patient Position is Type 2C for CT/MR images only; the SEG IOD does not ask for it (dciodvfy finds the SEG clean)
    "Patient Position (0018,5100) not specified",
    # a BINARY SEG packs 1 bit per pixel, as the standard requires; dcm2niix reads it correctly (checked here)
    "Support for images that allocate 1 bits is experimental",
}


def check_seg_with_dcm2niix(seg: Path, labels: np.ndarray, geometry: Geometry, values: list[int], out: Path) -> None:
    """dcm2niix converts the SEG to a 4D image, one volume per segment: on the series' grid, each ``labels == value``."""
    folder = out / "seg"
    folder.mkdir(parents=True)
    shutil.copy(seg, folder / seg.name)
    image, warnings = dcm2niix(folder, out / "nii")
    assert [w for w in warnings if not any(ok in w for ok in ACCEPTED_SEG_DCM2NIIX_WARNINGS)] == []
    data = image.get_fdata()
    data = data[..., None] if data.ndim == 3 else data
    assert data.shape == (*labels.shape, len(values))
    for segment, value in enumerate(values):
        theirs, their_affine = canonical(data[..., segment], image.affine)
        ours, our_affine = canonical(labels == value, geometry.affine)
        np.testing.assert_allclose(our_affine, their_affine, atol=1e-3, rtol=0)
        np.testing.assert_array_equal(theirs > 0, ours > 0)


@needs_dcm2niix
@pytest.mark.parametrize("grid", [*GRIDS, "real CT"])
def test_dcm2niix_puts_our_seg_on_the_series_grid(tmp_path: Path, grid: str) -> None:
    """An independent reader of the SEG's per-frame positions and orientation: every segment where we put it."""
    folder = CT5 if grid == "real CT" else tmp_path / "s"
    if grid != "real CT":
        phantom_series(folder, grid)
    _, geometry, series = read_dicom_series(folder)
    labels = np.zeros(geometry.shape, np.uint8)
    labels[1:4, 2:6, 1:3] = 1  # asymmetric blocks on different slices
    labels[6:8, 0:2, 3:5] = 2
    seg = write_dicom_seg(tmp_path / "x.seg.dcm", labels, series, {0: "background", 1: "organ", 2: "lesion"}, "tiny", "1")
    check_seg_with_dcm2niix(seg, labels, geometry, [1, 2], tmp_path)
