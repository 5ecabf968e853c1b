"""MNI152 pair generator: packaged template, labels, determinism, nearest-neighbour labels, contrasts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medseg.data.mni152 import (
    DeformationSpec,
    _nilearn_maps,
    load_mni152,
    make_pair,
    random_deformation,
    write_pairs,
)
from medseg.io import read_image
from medseg.metrics.registration import folding_fraction
from medseg.networks.blocks.registration import warp_labels

SHAPE = (32, 32, 32)


@pytest.fixture(scope="module")
def template():
    return load_mni152(6, shape=SHAPE)  # 6 mm keeps the brain inside 32^3


def test_template_is_centred_labelled_and_keeps_world_positions(template) -> None:
    assert template.shape == SHAPE and template.spacing == (6.0, 6.0, 6.0)
    assert template.labels.dtype == np.uint8 and set(np.unique(template.labels)) == {0, 1, 2, 3}
    assert template.labels[0].max() == 0 and template.labels[:, :, -1].max() == 0  # background around
    t1, _, _, brain, affine = _nilearn_maps(6)
    # the crop/pad moved the affine's origin, not the anatomy: a voxel keeps its world position
    index = np.array([16, 16, 16, 1.0])
    world = template.affine @ index
    source = np.round(np.linalg.solve(affine, world)[:3]).astype(int)
    expected = t1[tuple(source)] * (brain[tuple(source)] > 0.5) / t1.max()
    assert template.t1[16, 16, 16] == pytest.approx(expected, rel=1e-5)
    # T1 contrast of the template itself: WM > GM > CSF/other
    means = [template.t1[template.labels == k].mean() for k in (1, 2, 3)]
    assert means[0] < means[1] < means[2]


def test_default_grid_is_padded_to_multiples_of_32() -> None:
    assert all(s % 32 == 0 for s in load_mni152(4).shape)


def test_pairs_are_deterministic_per_seed(template) -> None:
    a, b, c = make_pair(3, template), make_pair(3, template), make_pair(4, template)
    for key in ("fixed", "moving", "fixed_labels", "moving_labels", "moving_flow"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert not np.array_equal(a.moving, c.moving)
    assert not np.array_equal(a.fixed, a.moving)


def test_labels_are_integer_and_warped_by_nearest_neighbour(template) -> None:
    visible = DeformationSpec(max_displacement_mm=12.0, smoothness_mm=12.0)  # 1-2 voxels at 6 mm
    pair = make_pair(5, template, deformation=visible)
    for labels, flow in ((pair.fixed_labels, pair.fixed_flow), (pair.moving_labels, pair.moving_flow)):
        assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1, 2, 3}
        expected = warp_labels(torch.from_numpy(template.labels)[None, None], torch.from_numpy(flow)[None])
        np.testing.assert_array_equal(labels, expected[0, 0].numpy())
    assert np.abs(pair.moving_flow).max() > 0.1  # it did deform
    assert not np.array_equal(pair.moving_labels, template.labels)
    unchanged = make_pair(5, template, fixed_is_template=True)
    np.testing.assert_array_equal(unchanged.fixed_labels, template.labels)


def test_intermodal_contrast_differs_from_t1(template) -> None:
    pair = make_pair(7, template, moving_contrast="t2", fixed_is_template=True, intensity=None)
    t1 = make_pair(7, template, moving_contrast="t1", fixed_is_template=True, intensity=None)
    np.testing.assert_array_equal(pair.moving_labels, t1.moving_labels)  # same subject, other contrast
    t2_means = [pair.moving[pair.moving_labels == k].mean() for k in (1, 2, 3)]
    t1_means = [t1.moving[t1.moving_labels == k].mean() for k in (1, 2, 3)]
    assert t2_means[0] > t2_means[1] > t2_means[2]  # CSF bright, WM dark
    assert t1_means[0] < t1_means[1] < t1_means[2]
    brain = pair.moving_labels > 0
    assert np.corrcoef(pair.moving[brain], t1.moving[brain])[0, 1] < 0


def test_intensity_changes_are_normalised_to_the_unit_range(template) -> None:
    pair = make_pair(8, template)
    for image in (pair.fixed, pair.moving):
        assert image.dtype == np.float32 and image.min() == 0.0 and image.max() == 1.0


def test_random_deformations_are_smooth_diffeomorphisms() -> None:
    rng = np.random.default_rng(0)
    spec = DeformationSpec(max_displacement_mm=12.0, smoothness_mm=12.0, max_rotation_deg=5.0, max_scaling=0.05)
    flow = random_deformation((24, 24, 24), (2.0, 2.0, 2.0), spec, rng)
    assert flow.shape == (3, 24, 24, 24) and flow.dtype == np.float32
    assert folding_fraction(torch.from_numpy(flow)[None]).item() == 0.0
    # smooth: second differences are small against the field itself
    assert np.abs(np.diff(flow, 2, axis=1)).max() < 0.2 * np.abs(flow).max()


def test_write_pairs_writes_nifti_with_the_template_geometry(template, tmp_path) -> None:
    index = write_pairs(tmp_path / "pairs", 2, seed=1, template=template, moving_contrast="t2", deformation="small")
    listing = json.loads(index.read_text())
    assert len(listing["pairs"]) == 2 and listing["labels"]["2"] == "grey_matter"
    entry = listing["pairs"][1]
    moving, geometry = read_image(index.parent / entry["moving"])
    labels, _ = read_image(index.parent / entry["moving_labels"])
    np.testing.assert_allclose(geometry.affine, template.affine, atol=1e-5)
    seed = int(np.random.SeedSequence([1, 1]).generate_state(1)[0])
    again = make_pair(seed, template, moving_contrast="t2", deformation="small")
    np.testing.assert_allclose(np.squeeze(np.asarray(moving)), again.moving, atol=1e-6)
    np.testing.assert_array_equal(np.squeeze(np.asarray(labels)), again.moving_labels)
    assert entry["moving_contrast"] == "t2"


def test_extra_scales_add_fine_deformation_and_lower_identity_overlap(template) -> None:
    """The multi-scale option (MICDIR's claim experiment): with the same draws for the main component, the
    extra components add displacement below the main smoothness, keep the map a diffeomorphism and move the
    tissue labels further from the template's."""
    from scipy import ndimage

    from medseg.data.mni152 import DEFORMATIONS
    from medseg.inference.registration import label_dice

    spacing = (2.0, 2.0, 2.0)
    main = DeformationSpec(max_displacement_mm=16.0, smoothness_mm=16.0)
    multi = DeformationSpec(16.0, 16.0, extra_scales=[[8, 6.0], [4.0, 4.0]])  # lists, as a YAML dict gives them
    assert multi.extra_scales == ((8.0, 6.0), (4.0, 4.0))

    def fine(flow: np.ndarray) -> float:  # displacement below the main component's smoothness (8 voxels)
        return float(np.abs(flow - np.stack([ndimage.gaussian_filter(c, 8.0) for c in flow])).mean())

    one = random_deformation((32, 32, 32), spacing, main, np.random.default_rng(3))
    several = random_deformation((32, 32, 32), spacing, multi, np.random.default_rng(3))
    assert fine(several) > 1.5 * fine(one)
    assert folding_fraction(torch.from_numpy(several)[None]).item() == 0.0
    with pytest.raises(ValueError, match="extra_scales"):
        DeformationSpec(extra_scales=((4.0, 0.0),))

    def overlap(deformation: DeformationSpec) -> float:  # grey/white matter Dice of moving vs fixed labels, unregistered
        pairs = [make_pair(s, template, deformation=deformation) for s in range(3)]
        dice = [label_dice(p.moving_labels, p.fixed_labels) for p in pairs]
        return float(np.mean([[d["2"], d["3"]] for d in dice]))

    assert overlap(DEFORMATIONS["multiscale"]) < overlap(DeformationSpec(20.0, 20.0)) - 0.03
