from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg.data import list_phantoms
from medseg.data.atrium_phantom import atrium_phantom, make_atrium_dataset
from medseg.data.layouts import load_decathlon
from medseg.io.image_io import read_image


def test_atrium_phantom_is_deterministic_and_has_same_intensity_distractors() -> None:
    image, label, affine = atrium_phantom(5)
    again, label2, _ = atrium_phantom(5)
    np.testing.assert_array_equal(image, again)
    np.testing.assert_array_equal(label, label2)
    assert image.shape == label.shape and np.isfinite(image).all() and set(np.unique(label)) == {0, 1}
    assert 0.005 < label.mean() < 0.1
    blood = np.median(image[label == 1])
    bright_outside = ((image > 0.8 * blood) & (label == 0)).sum()
    assert bright_outside > label.sum()  # the distractors (ventricle, aorta) are as bright as the atrium
    assert np.allclose(np.linalg.det(affine[:3, :3]), np.prod(np.abs(np.diag(affine))[:3]))


def test_atrium_dataset_lists_unlabelled_cases_without_labels(tmp_path: Path) -> None:
    assert "atrium_phantom" in list_phantoms()
    path = make_atrium_dataset(tmp_path, n_train=3, n_test=1, seed=1, unlabelled=1)
    cases = load_decathlon(path)
    assert [c["label"] is None for c in cases] == [False, False, True]
    assert not (tmp_path / "labelsTr" / "atrium_002.nii.gz").exists()
    test = load_decathlon(path, section="medseg_test_labels")
    img, geom = read_image(test[0]["image"][0])
    lab, lgeom = read_image(test[0]["label"], "label")
    assert img.shape == lab.shape and geom.mismatch(lgeom, atol=1e-4) is None
    assert json.loads(path.read_text())["labels"] == {"0": "background", "1": "atrium"}
    with pytest.raises(ValueError, match="unlabelled"):
        make_atrium_dataset(tmp_path / "bad", n_train=2, unlabelled=2)
