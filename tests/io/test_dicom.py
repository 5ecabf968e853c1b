"""DICOM series in: round trip through the phantom writer, series choice, and the refusals
(mixed orientations, missing/duplicate slices, gantry tilt)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medseg.data.synthetic import ras_affine
from medseg.errors import MedsegInputError
from medseg.io.dicom import is_dicom_folder, list_series, read_dicom_series
from medseg.io.dicom_write import write_dicom_series
from medseg.io.geometry import Geometry, reorient
from medseg.io.image_io import read_image, write_image


def _volume(shape: tuple[int, int, int] = (14, 11, 9), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    array = rng.normal(0, 200, shape).astype(np.float32)
    array[3:9, 2:7, 2:6] += 400  # an asymmetric block: a flipped or transposed read would not match
    return array


def _oblique_affine(shape: tuple[int, int, int]) -> np.ndarray:
    """RAS affine with a 20 degree rotation about z and 10 about x, anisotropic voxels, odd origin."""
    a, b = np.radians(20), np.radians(10)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag([0.8, 0.9, 2.5])
    affine[:3, 3] = [-30.25, 12.5, 77.0]
    return affine


@pytest.mark.parametrize("layout", ["RAS", "LPS", "PIR", "oblique"])
def test_series_round_trip_matches_the_nifti_path(tmp_path: Path, layout: str) -> None:
    array = _volume()
    if layout == "oblique":
        affine = _oblique_affine(array.shape)
    else:
        array, affine = reorient(array, ras_affine((0.7, 0.8, 3.0), array.shape), layout)
    nifti = write_image(tmp_path / "image.nii.gz", array, Geometry(array.shape, affine), "image")
    ref_array, ref_geometry = read_image(nifti)
    files = write_dicom_series(tmp_path / "series", ref_array, ref_geometry, seed=layout)
    # file names must not matter: shuffle them so the reader has to sort by position
    names = [f.name for f in files]
    random.Random(1).shuffle(names)
    for f in files:
        f.rename(f.with_name("x" + f.name))
    for f, name in zip(files, names):
        f.with_name("x" + f.name).rename(f.with_name(name))

    assert is_dicom_folder(tmp_path / "series")
    dicom_array, geometry, series = read_dicom_series(tmp_path / "series")
    assert ref_geometry.mismatch(geometry) is None
    slope = float(pydicom.dcmread(files[0], stop_before_pixels=True).RescaleSlope)
    np.testing.assert_allclose(dicom_array, ref_array, atol=slope)
    assert series.n_slices == array.shape[2] and series.modality == "CT"
    # files[k] is slice k: its position is the affine's origin of slice k
    lps_origin = lambda k: (np.diag([-1, -1, 1, 1]) @ ref_geometry.affine @ [0, 0, k, 1])[:3]  # noqa: E731
    for k in (0, array.shape[2] - 1):
        position = [float(v) for v in pydicom.dcmread(series.files[k], stop_before_pixels=True).ImagePositionPatient]
        np.testing.assert_allclose(position, lps_origin(k), atol=1e-4)


def test_left_handed_grid_is_refused_by_the_writer(tmp_path: Path) -> None:
    array, affine = reorient(_volume(), ras_affine((1, 1, 2), (14, 11, 9)), "LAS")
    with pytest.raises(ValueError, match="left-handed"):
        write_dicom_series(tmp_path / "s", array, Geometry(array.shape, affine))


def _series(folder: Path, n_slices: int = 9, series_number: int = 1, seed: str = "a") -> list[Path]:
    array = _volume((12, 10, n_slices))
    return write_dicom_series(folder, array, Geometry(array.shape, ras_affine((1.0, 1.0, 2.0), array.shape)), seed=seed, series_number=series_number)


def test_folder_with_two_series_picks_the_longest_and_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    _series(folder / "tmp_a", 9, 1)
    _series(folder / "tmp_b", 6, 2)
    for sub in ("tmp_a", "tmp_b"):
        for f in (folder / sub).iterdir():
            f.rename(folder / f"{sub}_{f.name}")
    _, geometry, series = read_dicom_series(folder)
    assert geometry.shape[2] == 9 and "most slices (9) of 2" in series.note
    other = next(uid for uid in list_series(folder) if uid != series.uid)
    _, geometry_b, series_b = read_dicom_series(folder, other)
    assert geometry_b.shape[2] == 6 and series_b.uid == other
    with pytest.raises(MedsegInputError, match="has no series 1.2.3"):
        read_dicom_series(folder, "1.2.3")


def _edit(files: list[Path], index: int, **tags: object) -> None:
    ds = pydicom.dcmread(files[index])
    for name, value in tags.items():
        setattr(ds, name, value)
    ds.save_as(files[index])


def test_missing_slice_is_an_error(tmp_path: Path) -> None:
    files = _series(tmp_path / "s")
    files[4].unlink()
    with pytest.raises(MedsegInputError, match=r"missing slices: a gap of 4 mm .* \(about 1 slice\(s\) missing\)"):
        read_dicom_series(tmp_path / "s")


def test_duplicate_position_is_an_error(tmp_path: Path) -> None:
    files = _series(tmp_path / "s")
    position = pydicom.dcmread(files[3]).ImagePositionPatient
    _edit(files, 4, ImagePositionPatient=position)
    with pytest.raises(MedsegInputError, match="same position"):
        read_dicom_series(tmp_path / "s")


def test_mixed_orientations_are_an_error(tmp_path: Path) -> None:
    files = _series(tmp_path / "s")
    _edit(files, 2, ImageOrientationPatient=["0", "1", "0", "0", "0", "-1"])
    with pytest.raises(MedsegInputError, match="mixed orientations"):
        read_dicom_series(tmp_path / "s")


def test_gantry_tilt_is_an_error(tmp_path: Path) -> None:
    files = _series(tmp_path / "s")
    for k in range(len(files)):  # each slice shifted along y by 0.5 mm per 2 mm step: ~14 degrees of tilt
        position = [float(v) for v in pydicom.dcmread(files[k]).ImagePositionPatient]
        _edit(files, k, ImagePositionPatient=[f"{position[0]:.4f}", f"{position[1] + 0.5 * k:.4f}", f"{position[2]:.4f}"])
    with pytest.raises(MedsegInputError, match=r"gantry tilt: .* by 14\.0\d degrees"):
        read_dicom_series(tmp_path / "s")


def test_folder_without_dicom(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    assert not is_dicom_folder(tmp_path)
    with pytest.raises(MedsegInputError, match="holds no DICOM series"):
        read_dicom_series(tmp_path)
