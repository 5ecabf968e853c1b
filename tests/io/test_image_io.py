from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.errors import MedsegInputError, MedsegOutputError
from medseg.io import read_geometry, read_image, read_modalities, write_image
from medseg.io.geometry import reorient


def _affine(spacing=(0.7, 0.7, 3.0), code="RAS"):
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-10.0, 20.0, -30.0)
    _, oriented = reorient(np.zeros((5, 6, 7)), affine, code)
    return oriented


def _save(path: Path, array: np.ndarray, affine: np.ndarray, qcode: int = 1, scode: int = 1) -> Path:
    img = nib.Nifti1Image(array, affine)
    img.set_qform(affine, code=qcode)
    img.set_sform(affine, code=scode)
    nib.save(img, str(path))
    return path


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_label_round_trip_keeps_geometry(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(8, 9, 10)).astype(np.float32)
    affine = _affine(code="LPS")
    src = _save(tmp_path / "img.nii.gz", image, affine, qcode=1, scode=2)
    array, geometry = read_image(src)
    if suffix != ".nii.gz":  # convert the input to the other format first
        src = write_image(tmp_path / f"img{suffix}", array, geometry, kind="image")
        array, geometry = read_image(src)
    np.testing.assert_allclose(array, image, atol=1e-6)
    labels = (array > 0).astype(np.uint8)
    out = write_image(tmp_path / f"mask{suffix}", labels, geometry)
    back, g2 = read_image(out, "label")
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, labels)
    assert geometry.mismatch(g2) is None
    np.testing.assert_allclose(g2.affine, affine, atol=1e-5)
    if suffix.startswith(".nii"):
        hdr = nib.load(str(out)).header
        assert (int(hdr["qform_code"]), int(hdr["sform_code"])) == (1, 2)


def test_labels_above_255_are_uint16(tmp_path: Path) -> None:
    _, geometry = read_image(_save(tmp_path / "a.nii.gz", np.zeros((4, 4, 4), np.float32), _affine()))
    labels = np.zeros((4, 4, 4), np.int64)
    labels[0, 0, 0] = 300
    out = write_image(tmp_path / "l.nii.gz", labels, geometry)
    assert nib.load(str(out)).get_data_dtype() == np.uint16


def test_write_refuses_wrong_shape_and_leaves_nothing(tmp_path: Path) -> None:
    _, geometry = read_image(_save(tmp_path / "a.nii.gz", np.zeros((4, 5, 6), np.float32), _affine()))
    with pytest.raises(MedsegOutputError, match="shape"):
        write_image(tmp_path / "out.nii.gz", np.zeros((4, 5, 7)), geometry)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"]


def test_write_checks_tensor_affine(tmp_path: Path) -> None:
    import torch
    from monai.data import MetaTensor

    _, geometry = read_image(_save(tmp_path / "a.nii.gz", np.zeros((4, 5, 6), np.float32), _affine()))
    wrong = MetaTensor(torch.zeros(4, 5, 6), affine=torch.eye(4))
    with pytest.raises(MedsegOutputError, match="affine"):
        write_image(tmp_path / "out.nii.gz", wrong, geometry)
    assert not (tmp_path / "out.nii.gz").exists()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


BAD_INPUTS = {
    "missing": (lambda p: p / "none.nii.gz", "not found"),
    "empty": (lambda p: _write(p / "e.nii.gz", b""), "empty"),
    "text": (lambda p: _write(p / "t.nii.gz", b"hello, I am text"), "not a valid NIfTI"),
    "2d": (lambda p: _save(p / "2d.nii.gz", np.zeros((5, 6), np.float32), np.eye(4)), "2D"),
    "5d": (lambda p: _save(p / "5d.nii.gz", np.zeros((3, 3, 3, 2, 2), np.float32), np.eye(4)), "5D"),
    "4d": (lambda p: _save(p / "4d.nii.gz", np.zeros((3, 3, 3, 2), np.float32), np.eye(4)), "4D"),
    "nan": (lambda p: _save(p / "nan.nii.gz", np.full((3, 3, 3), np.nan, np.float32), np.eye(4)), "NaN"),
    "inf": (lambda p: _save(p / "inf.nii.gz", np.full((3, 3, 3), np.inf, np.float32), np.eye(4)), "NaN or infinite"),
    "zero_dim": (lambda p: _save(p / "z.nii.gz", np.zeros((3, 0, 3), np.float32), np.eye(4)), "zero-sized"),
    "folder": (lambda p: _mkdir(p / "d.nii.gz"), "folder"),
    "extension": (lambda p: _write(p / "x.png", b"123"), "unsupported"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_raise_one_line_naming_the_file(tmp_path: Path, case: str) -> None:
    make, expected = BAD_INPUTS[case]
    path = make(tmp_path)
    with pytest.raises(MedsegInputError) as info:
        read_image(path)
    message = str(info.value)
    assert str(path) in message and expected in message and "\n" not in message


def test_truncated_gzip(tmp_path: Path) -> None:
    good = _save(tmp_path / "g.nii.gz", np.random.default_rng(0).normal(size=(30, 30, 30)).astype(np.float32), np.eye(4))
    data = good.read_bytes()
    bad = tmp_path / "trunc.nii.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(MedsegInputError, match="truncated|not a valid"):
        read_image(bad)


def test_labels_must_be_integers(tmp_path: Path) -> None:
    path = _save(tmp_path / "l.nii.gz", np.full((3, 3, 3), 0.5, np.float32), np.eye(4))
    with pytest.raises(MedsegInputError, match="non-integer"):
        read_image(path, "label")


def test_read_geometry_without_voxels(tmp_path: Path) -> None:
    affine = _affine(code="PSR")
    path = _save(tmp_path / "a.nii.gz", np.zeros((4, 5, 6), np.float32), affine)
    geometry = read_geometry(path)
    assert geometry.shape == (4, 5, 6) and geometry.orientation == "PSR"
    assert geometry.spacing == pytest.approx((0.7, 3.0, 0.7))  # P<-A (0.7), S (3.0), R (0.7)


def test_modalities_must_share_geometry(tmp_path: Path) -> None:
    a = _save(tmp_path / "t1.nii.gz", np.ones((4, 4, 4), np.float32), _affine())
    b = _save(tmp_path / "t2.nii.gz", np.ones((4, 4, 4), np.float32), _affine(spacing=(1, 1, 1)))
    stacked, _ = read_modalities([a, a])
    assert stacked.shape == (2, 4, 4, 4)
    with pytest.raises(MedsegInputError, match="modality 't2'"):
        read_modalities([a, b], names=["t1", "t2"])


def test_gzip_of_garbage_is_not_nifti(tmp_path: Path) -> None:
    path = tmp_path / "g.nii.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(b"\x00" * 400)
    with pytest.raises(MedsegInputError):
        read_image(path)
