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


def test_nuisance_option_misleads_intensity_where_the_tree_filters_keep_the_structure() -> None:
    """``nuisance``: dark voids in the blood pools (some in the labelled atrium) and bright spots outside the
    label; each is a small component of its slice, so the Min-tree view removes the voids and the Max-tree
    view the spots, while the other view keeps much of them (the two views differ where intensity misleads)."""
    from dataclasses import replace

    from medseg.data.atrium_phantom import NUISANCE, AtriumPhantomSpec
    from medseg.transforms.tree_filter import structure_aware_filter

    with_it = replace(AtriumPhantomSpec(), **NUISANCE)  # type: ignore[arg-type]  # NUISANCE's keys are fields
    without = replace(with_it, voids=0, spots=0)
    kept = {"min": [0.0, 0.0], "max": [0.0, 0.0]}  # per view: |filtered difference| and |raw difference| on the nuisance
    other = {"min": [0.0, 0.0], "max": [0.0, 0.0]}
    in_atrium = 0
    for seed in (0, 1):
        a, label, _ = atrium_phantom(seed, without)
        b, label_b, _ = atrium_phantom(seed, with_it)
        np.testing.assert_array_equal(label, label_b)  # the anatomy and its label do not change
        voids, spots = b < a, b > a  # the two cases differ only in the nuisance voxels (own random stream)
        assert voids.sum() > 20 and spots.sum() > 100 and not (spots & (label == 1)).any()
        in_atrium += int((voids & (label == 1)).sum())
        value_range = (float(b.min()), float(b.max()))
        for tree, mask in (("min", voids), ("max", spots)):
            for z in np.flatnonzero(mask.sum(axis=(0, 1))):
                m, sa, sb = mask[:, :, z], a[:, :, z], b[:, :, z]
                for view, acc in ((tree, kept[tree]), ("max" if tree == "min" else "min", other[tree])):
                    fa = structure_aware_filter(sa, view, value_range=value_range)  # type: ignore[arg-type]  # a tree name
                    fb = structure_aware_filter(sb, view, value_range=value_range)  # type: ignore[arg-type]  # a tree name
                    acc[0] += float(np.abs(fb - fa)[m].sum())
                    acc[1] += float(np.abs(sb - sa)[m].sum())
    assert in_atrium > 10
    for tree in ("min", "max"):
        removed, remaining = kept[tree][0] / kept[tree][1], other[tree][0] / other[tree][1]
        assert removed < 0.3 and remaining > 0.3, (tree, removed, remaining)
    # off by default: the existing pipelines keep their data
    assert AtriumPhantomSpec().voids == 0 and AtriumPhantomSpec().spots == 0


def test_nuisance_is_a_dataset_option(tmp_path: Path) -> None:
    from medseg.data.registry import generate_phantom

    plain = read_image(load_decathlon(make_atrium_dataset(tmp_path / "a", n_train=2, n_test=0, seed=3))[1]["image"][0])[0]
    path = generate_phantom("atrium_phantom", tmp_path / "b", 2, 0, 3, nuisance=True)  # data.synthetic.options
    other = read_image(load_decathlon(path)[1]["image"][0])[0]
    assert plain.shape == other.shape and not np.allclose(plain, other)
