"""ISA-L gzip for NIfTI: files written through it are standard gzip, round trips are exact."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np

from medseg.io import fastgz, read_image
from medseg.io.geometry import Geometry
from medseg.io.image_io import write_image


def test_isal_is_in_use_and_round_trips(tmp_path: Path) -> None:
    assert fastgz.enable()  # isal is a dependency
    from nibabel.openers import ImageOpener

    assert ImageOpener.compress_ext_map[".gz"][0] is fastgz.isal_gzip_open
    labels = np.random.default_rng(0).integers(0, 5, (20, 18, 9)).astype(np.uint8)
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    out = write_image(tmp_path / "l.nii.gz", labels, Geometry((20, 18, 9), affine), "label")
    raw = gzip.decompress(out.read_bytes())  # plain zlib reads it: still standard gzip
    assert nib.Nifti1Image.from_bytes(raw).shape == (20, 18, 9)
    back, geometry = read_image(out, "label")
    np.testing.assert_array_equal(back, labels)
    np.testing.assert_allclose(geometry.affine, affine)


def test_truncated_gz_is_reported_as_truncated_with_isal(tmp_path: Path) -> None:
    """ISA-L fails while nibabel sniffs the header; the error still says the file is truncated."""
    import pytest

    from medseg.errors import MedsegInputError

    assert fastgz.enable()
    image = np.random.default_rng(0).normal(size=(40, 40, 30)).astype(np.float32)
    full = write_image(tmp_path / "full.nii.gz", image, Geometry((40, 40, 30), np.eye(4)), "image")
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(full.read_bytes()[:2000])
    with pytest.raises(MedsegInputError, match="truncated or corrupt"):
        read_image(cut)
    (tmp_path / "junk.nii.gz").write_bytes(b"not gzip at all" * 40)
    with pytest.raises(MedsegInputError, match="not a valid NIfTI"):
        read_image(tmp_path / "junk.nii.gz")
