"""The Dixon spine phantom: Dixon signal relations, disc labels, a Decathlon layout with named modalities."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from medseg.data import generate_phantom, list_phantoms
from medseg.data.layouts import load_decathlon
from medseg.data.spine_phantom import DIXON_MODALITIES, SpinePhantomSpec, dixon_images, spine_phantom, visibility_weights
from medseg.io.image_io import read_geometry, read_image

SMALL = SpinePhantomSpec(n_discs=3, field_of_view_mm=(24.0, 48.0, 96.0), vertebra_height_mm=(12.0, 14.0), disc_height_mm=(6.0, 8.0))


def test_noise_free_dixon_images_obey_the_signal_model() -> None:
    rng = np.random.default_rng(0)
    pd = rng.uniform(0, 1, (6, 6, 6)).astype(np.float32)
    ff = rng.uniform(0, 1, (6, 6, 6)).astype(np.float32)
    images = dixon_images(pd, ff, (1.0, 1.0, 1.0), rng, noise=0.0, bias_strength=0.0)
    assert tuple(images) == DIXON_MODALITIES
    np.testing.assert_allclose(images["inn"], images["wat"] + images["fat"], rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(images["opp"], np.abs(images["wat"] - images["fat"]), rtol=1e-4, atol=1e-2)


def test_discs_are_water_bright_and_fat_dark_between_fatty_vertebrae() -> None:
    images, label, affine = spine_phantom(3, SMALL)
    assert label.dtype == np.uint8 and set(np.unique(label)) == {0, 1}
    assert ndimage.label(label)[1] == 3  # one connected component per disc
    assert all(image.shape == label.shape and image.dtype == np.float32 for image in images.values())
    np.testing.assert_allclose(np.abs(np.diag(affine)[:3]).min(), np.abs(np.diag(affine)[:3]).min())
    disc = ndimage.binary_erosion(label.astype(bool))
    rim = ndimage.binary_dilation(label.astype(bool), iterations=3) & ~ndimage.binary_dilation(label.astype(bool))
    fat_fraction = images["fat"] / (images["fat"] + images["wat"] + 1e-6)
    assert fat_fraction[disc].mean() < 0.15 < fat_fraction[rim].mean()
    assert images["wat"][disc].mean() > images["wat"][rim].mean()


def test_dataset_names_each_modality_and_shares_geometry(tmp_path: Path) -> None:
    assert "spine_dixon" in list_phantoms()
    dataset = generate_phantom("spine_dixon", tmp_path, 2, 1, seed=0, n_discs=2, field_of_view_mm=[24, 48, 64],
                               vertebra_height_mm=[10, 12], disc_height_mm=[5, 6])
    meta = json.loads(dataset.read_text())
    assert meta["modality"] == {"0": "fat", "1": "inn", "2": "opp", "3": "wat"}
    cases = load_decathlon(dataset)
    assert [c["case"] for c in cases] == ["spine_000", "spine_001"]
    for case in cases + load_decathlon(dataset, section="medseg_test_labels"):
        assert [Path(p).name.split("_")[-1] for p in case["image"]] == [f"{m}.nii.gz" for m in DIXON_MODALITIES]
        geometries = [read_geometry(p) for p in [*case["image"], case["label"]]]
        assert all(g.mismatch(geometries[0]) is None for g in geometries)
    assert read_geometry(cases[1]["label"]).orientation == "PIL"  # orientations cycle
    label, _ = read_image(cases[0]["label"], "label")
    assert label.max() == 1
    with pytest.raises(TypeError, match="unknown spine phantom option"):
        generate_phantom("spine_dixon", tmp_path / "x", 2, 0, seed=0, discs=3)


def test_visibility_weights_show_each_place_in_two_images_over_smooth_regions() -> None:
    weights = visibility_weights((12, 30, 60), (4.0, 2.0, 2.0), np.random.default_rng(0), n_visible=2, scale_mm=12.0)
    assert weights.shape == (4, 12, 30, 60) and weights.min() >= 0.0 and weights.max() <= 1.0
    hard = weights > 0.5
    assert abs(hard.sum(axis=0).mean() - 2.0) < 0.1  # two images show each place
    assert all(0.3 < h.mean() < 0.7 for h in hard)  # each image shows about half of the volume
    assert (hard[:, :, :, 1:] == hard[:, :, :, :-1]).mean() > 0.9  # in regions, not voxel noise
    with pytest.raises(ValueError, match="complementary_visible"):
        visibility_weights((4, 4, 4), (1.0, 1.0, 1.0), np.random.default_rng(0), n_visible=5)


def test_complementary_option_shows_each_disc_in_different_images_in_different_places() -> None:
    plain, label, _ = spine_phantom(3, SMALL)
    mixed, label_c, _ = spine_phantom(3, replace(SMALL, complementary=True))
    assert np.array_equal(label, label_c)
    disc = label.astype(bool)
    far = ~ndimage.binary_dilation(disc, iterations=4)
    shown = {}
    for m in DIXON_MODALITIES:
        difference = np.abs(mixed[m] - plain[m])
        assert difference[far].max() < 0.01 * plain[m].max()  # only the discs and their endplates change (+ blur)
        shown[m] = difference[disc] < 0.05 * plain[m].max()  # there the image equals the option-off image
    # the contrast images each show part of the discs, not all of them; together they show every disc voxel
    assert all(0.15 < shown[m].mean() < 0.85 for m in ("fat", "opp", "wat"))
    assert np.logical_or.reduce(list(shown.values())).mean() > 0.99
    # where the water image hides a disc, the disc is no longer water-bright: it looks like marrow
    hidden_wat = ~shown["wat"]
    assert mixed["wat"][disc][hidden_wat].mean() < 0.8 * plain["wat"][disc][hidden_wat].mean()
