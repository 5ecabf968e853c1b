"""DICOM series in: round trip through the phantom writer, series choice, and the refusals
(mixed orientations, missing/duplicate slices, gantry tilt), and real files shipped by pydicom and
nibabel altered per test (truncated files, DICOMDIR/README, several series, enhanced multi-frame, MOSAIC)."""

from __future__ import annotations

import gzip
import random
import shutil
import warnings
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pydicom.data
import pytest

from medseg.data.synthetic import ras_affine
from medseg.errors import MedsegInputError
from medseg.io.dicom import is_dicom_folder, list_series, read_dicom_series
from medseg.io.dicom_scan import check_complete
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


def test_slice_jitter_within_tolerance_is_read_without_itk_warnings(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Positions off the grid by 2% of the spacing are accepted; ITK's own "Non uniform sampling" stays silent."""
    files = _series(tmp_path / "s")
    position = [float(v) for v in pydicom.dcmread(files[4]).ImagePositionPatient]
    _edit(files, 4, ImagePositionPatient=[position[0], position[1], position[2] + 0.04])
    capfd.readouterr()
    array, geometry, _ = read_dicom_series(tmp_path / "s")
    assert array.shape == (12, 10, 9) and np.allclose(geometry.spacing, (1.0, 1.0, 2.0), atol=0.01)
    err = capfd.readouterr().err
    assert "WARNING" not in err and "Non uniform" not in err, err


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


# --- real DICOM files shipped by pydicom and nibabel (read in place, copied and altered per test) ---

PYDICOM_DATA = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent
CT5 = PYDICOM_DATA / "dicomdirtests" / "98892001" / "CT5N"  # a real 5-slice CT series (16x16, 2.5 mm)
CT4 = PYDICOM_DATA / "dicomdirtests" / "77654033" / "CT2"  # another real CT series (4 slices)
NICOM_DATA = Path(nibabel.__file__).parent / "nicom" / "tests" / "data"  # real Siemens and Philips MR files


def _copy(source: Path, folder: Path) -> list[Path]:
    """Copy a real series into ``folder``; returns the copies in slice order (along the normal)."""
    folder.mkdir(parents=True, exist_ok=True)
    copies = [Path(shutil.copy(f, folder / f.name)) for f in sorted(source.iterdir())]
    return sorted(copies, key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))


def _truncate(path: Path, drop: int) -> None:
    path.write_bytes(path.read_bytes()[:-drop])


def test_real_ct_series_reads_whole(tmp_path: Path) -> None:
    files = _copy(CT5, tmp_path / "ct")
    array, geometry, series = read_dicom_series(tmp_path / "ct")
    assert array.shape == (16, 16, 5) and series.n_slices == 5 and set(series.files) == set(files)
    assert series.describe() == f"series {series.uid} 'SmartScore - Gated 0.5 sec' (CT, 5 slices)"
    assert series.ignored == () and series.ignored_files == ()


@pytest.mark.parametrize("where", ["last", "middle"])
def test_truncated_file_is_named_not_dropped_or_a_gap(tmp_path: Path, where: str) -> None:
    files = _copy(CT5, tmp_path / "ct")
    victim = files[-1] if where == "last" else files[2]
    _truncate(victim, 100)  # cut inside the pixel data: GDCM's series scan silently skips such a file
    with pytest.raises(MedsegInputError, match=rf"{victim.name}: truncated DICOM file: pixel data has 412 of 512 bytes") as info:
        read_dicom_series(tmp_path / "ct")
    assert info.value.path == str(victim)


@pytest.mark.parametrize("keep", [600, 3336, 3400])
def test_file_cut_inside_its_header_is_named(tmp_path: Path, keep: int) -> None:
    files = _copy(CT5, tmp_path / "ct")
    # 600: before the series UID (pydicom returns what it read); 3336: mid-element; 3400: before the pixel data
    files[0].write_bytes(files[0].read_bytes()[:keep])
    with pytest.raises(MedsegInputError, match=rf"{files[0].name}: truncated") as info:
        read_dicom_series(tmp_path / "ct")
    assert info.value.path == str(files[0])


def test_two_real_series_the_chosen_and_the_ignored_are_described(tmp_path: Path) -> None:
    _copy(CT5, tmp_path / "mixed")
    _copy(CT4, tmp_path / "mixed")
    _, geometry, series = read_dicom_series(tmp_path / "mixed")
    assert geometry.shape[2] == 5 and "most slices (5) of 2" in series.note
    other = pydicom.dcmread(next(CT4.iterdir()), stop_before_pixels=True)
    assert series.ignored == (f"series {other.SeriesInstanceUID} '{other.SeriesDescription}' (CT, 4 files)",)
    lines = series.console_lines()
    assert lines[0] == f"used {series.describe()}" and lines[1] == f"ignored {series.ignored[0]}"
    assert series.summary()["ignored_series"] == list(series.ignored)


def test_readme_and_dicomdir_are_ignored_and_listed(tmp_path: Path) -> None:
    _copy(CT5, tmp_path / "ct")
    (tmp_path / "ct" / "README.TXT").write_text("exported by a PACS\n")
    shutil.copy(PYDICOM_DATA / "dicomdirtests" / "DICOMDIR", tmp_path / "ct" / "DICOMDIR")  # a real DICOMDIR (has the preamble)
    array, _, series = read_dicom_series(tmp_path / "ct")
    assert array.shape == (16, 16, 5)
    assert series.ignored_files == ("DICOMDIR (a DICOMDIR (index of a DICOM medium))", "README.TXT (not a DICOM file)")
    assert "ignored 2 file(s) that are no image of a series: DICOMDIR" in series.console_lines()[-1]


def test_enhanced_multiframe_is_refused_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "enhanced"
    folder.mkdir()
    # a real Philips Enhanced MR Image Storage file: 176 frames, geometry in the per-frame functional groups
    (folder / "mprage.dcm").write_bytes(gzip.decompress((NICOM_DATA / "philips_mprage.dcm.gz").read_bytes()))
    with pytest.raises(MedsegInputError, match=r"mprage\.dcm: multi-frame DICOM \(Enhanced MR Image Storage, 176 frames\) is not supported"):
        read_dicom_series(folder)


def test_siemens_mosaic_is_refused_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "mosaic"
    folder.mkdir()
    for name in ("0.dcm", "1.dcm"):  # two real Siemens DWI MOSAIC files of one series
        shutil.copy(NICOM_DATA / name, folder / name)
    with pytest.raises(MedsegInputError, match=r"0\.dcm: Siemens MOSAIC image .* is not supported"):
        read_dicom_series(folder)
    # the CSA "NumberOfImagesInMosaic" tag alone names it too (ImageType without MOSAIC)
    for name in ("0.dcm", "1.dcm"):
        ds = pydicom.dcmread(folder / name)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.save_as(folder / name)
    with pytest.raises(MedsegInputError, match="Siemens MOSAIC"):
        read_dicom_series(folder)


@pytest.mark.parametrize("name", ["MR_small_jpeg_ls_lossless.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"])
def test_truncated_compressed_pixel_data_is_found(tmp_path: Path, name: str) -> None:
    path = Path(shutil.copy(PYDICOM_DATA / name, tmp_path / name))
    check_complete(path, pydicom.dcmread(path, defer_size=1024))  # the intact file passes
    _truncate(path, 100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom may note the missing sequence delimiter
        ds = pydicom.dcmread(path, defer_size=1024)
    with pytest.raises(MedsegInputError, match=rf"{name}: truncated or corrupt DICOM file: GDCM cannot decode"):
        check_complete(path, ds)
