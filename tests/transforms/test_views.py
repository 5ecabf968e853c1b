"""The two views of mutual training: DSAIF Max/Min-tree, noise, plain; gamma, rotation, filter scope."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.engine.semisup import _rotate_back
from medseg.transforms.intensity_curves import BEZIER_TYPES, bezier_remap
from medseg.transforms.tree_filter import structure_aware_filter
from medseg.transforms.views import FILTERED_KEYS, IntensityRanged, MutualViewsd, VolumeTreeFilterd, default_rotate_axes, gamma_contrast


def _crop(seed: int = 0, shape: tuple[int, ...] = (1, 12, 12, 12)) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    image = torch.from_numpy(rng.normal(0, 1, shape).astype(np.float32))
    return IntensityRanged()({"image": image})


def test_unperturbed_views_are_the_crop() -> None:
    d = _crop()
    out = MutualViewsd("dsaif", prob=0.0, rotate_axes=(1, 2), bezier=False).set_random_state(0)(d)
    assert torch.equal(out["view1"], d["image"]) and torch.equal(out["view2"], d["image"]) and int(out["rot90"]) == 0


def test_dsaif_views_are_max_and_min_tree_filters_in_the_volume_range() -> None:
    d = _crop(1)
    lo, hi = -5.0, 5.0  # the volume's range, wider than the crop's
    d["intensity_range"] = np.array([[lo, hi]], dtype=np.float32)
    views = MutualViewsd("dsaif", prob=1.0, gamma_prob=0.0, min_area=6, bezier=False).set_random_state(3)
    out = views(d)
    crop = d["image"].numpy()[0]
    for key, tree in zip(("view1", "view2"), views.trees()):
        expected = structure_aware_filter(crop, tree, min_area=6, value_range=(lo, hi))
        np.testing.assert_array_equal(out[key].numpy()[0], expected)
    assert set(views.trees()) == {"max", "min"}


def test_swap_probability_assigns_both_orders() -> None:
    views = MutualViewsd("dsaif", prob=1.0, min_area=4).set_random_state(0)
    orders = set()
    for _ in range(12):
        views(_crop())
        orders.add(views.trees())
    assert orders == {("max", "min"), ("min", "max")}


def test_rotation_is_undone_on_the_output() -> None:
    d = _crop(2)
    views = MutualViewsd("plain", prob=1.0, gamma_prob=0.0, rotate_axes=(1, 2), bezier=False).set_random_state(0)
    ks = []
    for _ in range(8):
        out = views(d)
        k = int(out["rot90"])
        ks.append(k)
        back = _rotate_back(out["view2"][None], torch.tensor([k]), (1, 2))[0]
        torch.testing.assert_close(back, out["view1"])
    assert len(set(ks)) > 1


def test_perturbations_share_their_random_draws() -> None:
    """Same seed: plain, noise and dsaif draw the same perturb/gamma/rotation decisions (like for like)."""
    draws = {}
    for kind in ("plain", "noise", "dsaif"):
        views = MutualViewsd(kind, prob=0.5, rotate_axes=(1, 2), min_area=4).set_random_state(7)
        seq = []
        for _ in range(6):
            views(_crop())
            seq.append((views._do_transform, tuple(views.gammas), views.k))
        draws[kind] = seq
    assert draws["plain"] == draws["noise"] == draws["dsaif"]


def test_noise_views_differ_and_are_bounded() -> None:
    d = _crop(3)
    out = MutualViewsd("noise", prob=1.0, gamma_prob=0.0, noise_std=0.1, noise_clip=0.2, bezier=False).set_random_state(0)(d)
    lo, hi = d["intensity_range"][0]
    diff1 = (out["view1"] - d["image"]).abs()
    assert 0 < float(diff1.max()) <= 0.2 * (hi - lo) + 1e-5
    assert not torch.equal(out["view1"], out["view2"])


@pytest.mark.parametrize(("shape", "slice_axis", "crop"), [((1, 10, 11, 9), None, None), ((1, 10, 11, 4), 2, 1), ((1, 5, 9, 10), 0, 3)])
def test_volume_scope_equals_patch_scope_for_a_whole_volume_crop(shape: tuple[int, ...], slice_axis: int | None, crop: int | None) -> None:
    """Volume-scope views cropped at the place of a crop equal the patch-scope views of that crop when the
    crop holds the whole volume (3D) or a whole slice (slice by slice, 2D networks)."""
    d = VolumeTreeFilterd(slice_axis=slice_axis, min_area=5)(_crop(4, shape))
    assert set(FILTERED_KEYS.values()) <= set(d)
    if crop is not None:  # the crop = one whole slice of the volume, ranges still the volume's
        index = [slice(None)] * 4
        index[1 + slice_axis] = slice(crop, crop + 1)
        d = {k: (v[tuple(index)] if isinstance(v, torch.Tensor) else v) for k, v in d.items()}
    kwargs = dict(prob=1.0, gamma_prob=1.0, gamma_range=(1.0, 1.0), min_area=5, bezier=False)  # gamma 1: order irrelevant
    patch = MutualViewsd("dsaif", scope="patch", **kwargs).set_random_state(5)(d)
    volume = MutualViewsd("dsaif", scope="volume", **kwargs).set_random_state(5)(d)
    for key in ("view1", "view2"):
        torch.testing.assert_close(patch[key], volume[key])
        assert not torch.equal(volume[key], torch.as_tensor(d["image"]))
    assert not set(FILTERED_KEYS.values()) & set(volume)


def test_volume_filter_cache_serves_repeats(tmp_path) -> None:
    from medseg.transforms.filter_cache import FilterCache

    cache = FilterCache(max_items=0, cache_dir=tmp_path)
    d = _crop(6, (1, 8, 8, 3))
    first = VolumeTreeFilterd(slice_axis=2, min_area=3, cache=cache)(d)
    again = VolumeTreeFilterd(slice_axis=2, min_area=3, cache=cache)(d)
    assert cache.misses == 6 and cache.hits == 6  # 2 trees x 3 slices, then all from disk
    for key in FILTERED_KEYS.values():
        torch.testing.assert_close(torch.as_tensor(first[key]), torch.as_tensor(again[key]))


def test_gamma_contrast_and_rotation_axes() -> None:
    x = np.linspace(0, 10, 11, dtype=np.float32)
    np.testing.assert_allclose(gamma_contrast(x, 2.0, 0.0, 10.0), x**2 / 10, rtol=1e-6)
    assert gamma_contrast(x, None, 0, 10) is not None
    assert default_rotate_axes((32, 32, 32), None) == (1, 2)
    assert default_rotate_axes((48, 48, 1), 2) == (0, 1)
    assert default_rotate_axes((48, 1, 48), None) == (0, 2)
    with pytest.raises(ValueError, match="perturbation"):
        MutualViewsd("mixup")  # type: ignore[arg-type]


# ---------------------------------------------------------------- Bezier views (the released configuration)


def test_bezier_views_are_each_one_of_the_three_remappings() -> None:
    d = _crop(9)
    lo, hi = (float(v) for v in d["intensity_range"][0])
    crop = d["image"].numpy()[0]
    views = MutualViewsd("dsaif", prob=0.0).set_random_state(0)  # unperturbed: the remapped crops themselves
    seen: list[set[int]] = [set(), set()]
    for _ in range(20):
        out = views(d)
        for i, key in enumerate(("view1", "view2")):
            kind = views.bezier_types[i]
            seen[i].add(kind)
            np.testing.assert_array_equal(out[key].numpy()[0], bezier_remap(crop, kind, lo, hi))
    assert seen == [set(BEZIER_TYPES), set(BEZIER_TYPES)]  # each network, independently, all three
    assert not np.allclose(bezier_remap(crop, 2, lo, hi), crop) and not np.allclose(bezier_remap(crop, 4, lo, hi), crop)


def test_bezier_remapping_comes_before_gamma_and_filter() -> None:
    d = _crop(10)
    lo, hi = (float(v) for v in d["intensity_range"][0])
    crop = d["image"].numpy()[0]
    views = MutualViewsd("dsaif", prob=1.0, min_area=6).set_random_state(4)
    for _ in range(4):
        out = views(d)
        for i, (key, tree) in enumerate(zip(("view1", "view2"), views.trees())):
            remapped = bezier_remap(crop, views.bezier_types[i], lo, hi)
            expected = structure_aware_filter(remapped, tree, min_area=6, value_range=(lo, hi), gamma=views.gammas[i])
            np.testing.assert_array_equal(out[key].numpy()[0], expected)


def test_bezier_flag_off_keeps_the_crop_and_the_other_draws() -> None:
    d = _crop(11)
    on = MutualViewsd("plain", prob=0.5, rotate_axes=(1, 2)).set_random_state(3)
    off = MutualViewsd("plain", prob=0.5, rotate_axes=(1, 2), bezier=False).set_random_state(3)
    for _ in range(6):
        on(d)
        out = off(d)
        assert off.bezier_types == [0, 0]
        assert (on._do_transform, on.gammas, on.k) == (off._do_transform, off.gammas, off.k)
        if not off._do_transform:
            assert torch.equal(out["view1"], d["image"])


def test_bezier_remap_keeps_the_range_and_order() -> None:
    x = np.linspace(-3.0, 7.0, 1001, dtype=np.float32)
    for kind in BEZIER_TYPES:
        y = bezier_remap(x, kind, -3.0, 7.0)
        assert y.dtype == np.float32 and np.all(np.diff(y) >= 0)
        assert abs(float(y[0]) + 3.0) < 1e-4 and abs(float(y[-1]) - 7.0) < 1e-4
    np.testing.assert_array_equal(bezier_remap(x, 0, -3.0, 7.0), x)
    with pytest.raises(ValueError, match="Bezier"):
        bezier_remap(x, 1, 0.0, 1.0)
