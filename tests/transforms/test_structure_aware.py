"""MONAI transforms around the DSAIF filters, and the filter cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medseg.transforms.filter_cache import FilterCache, array_key
from medseg.transforms.structure_aware import (
    RandStructureAwareFilter,
    RandStructureAwareFilterd,
    StructureAwareFilter,
    StructureAwareFilterd,
)
from medseg.transforms.tree_filter import structure_aware_filter


def _image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("shape", [(2, 20, 24), (2, 10, 12, 14)])
@pytest.mark.parametrize("tree", ["max", "min"])
def test_each_channel_filtered_on_its_own(shape: tuple[int, ...], tree: str) -> None:
    img = _image(shape)
    img[1] *= 10.0  # a different range per channel
    out = StructureAwareFilter(tree, min_area=8)(img)
    assert isinstance(out, np.ndarray) and out.shape == img.shape and out.dtype == np.float32
    for c in range(shape[0]):
        np.testing.assert_array_equal(out[c], structure_aware_filter(img[c], tree, min_area=8))
    assert not np.array_equal(out, img)


def test_tensor_types_and_meta_are_kept() -> None:
    img = MetaTensor(torch.from_numpy(_image((1, 12, 12, 12))), meta={"filename_or_obj": "case_001.nii.gz"})
    out = StructureAwareFilter("min", min_area=10)(img)
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "case_001.nii.gz"
    assert out.dtype == torch.float32 and out.shape == img.shape
    plain = StructureAwareFilter("min", min_area=10)(img.as_tensor())
    assert type(plain) is torch.Tensor
    torch.testing.assert_close(plain, out.as_tensor())
    ints = torch.randint(0, 6, (1, 9, 9), dtype=torch.int16)
    exact = StructureAwareFilter("max", min_area=3, levels=None)(ints)
    assert exact.dtype == torch.int16  # exact filtering keeps integer values


def test_rejects_images_without_channel_dim() -> None:
    with pytest.raises(ValueError, match="channel-first"):
        StructureAwareFilter()(np.zeros((8, 8)))
    with pytest.raises(ValueError):
        StructureAwareFilter(tree="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        StructureAwareFilter(value_range=(1.0, 0.0))


def test_memory_cache_filters_each_image_once() -> None:
    cache = FilterCache(max_items=4)
    filt = StructureAwareFilter("max", min_area=8, cache=cache)
    img = _image((1, 16, 16))
    first = filt(img)
    second = filt(img)
    np.testing.assert_array_equal(first, second)
    assert (cache.hits, cache.misses) == (1, 1)
    second[0, 0, 0] += 1.0  # results are copies: the cached view is not modified
    np.testing.assert_array_equal(filt(img), first)
    StructureAwareFilter("max", min_area=9, cache=cache)(img)  # other parameters: another entry
    StructureAwareFilter("min", min_area=8, cache=cache)(img)
    assert cache.misses == 3
    filt(img, gamma=0.7)  # gamma views are not cached by default
    assert cache.misses == 3 and len(cache) == 3


def test_lru_eviction_and_disk_cache(tmp_path: Path) -> None:
    cache = FilterCache(max_items=2, cache_dir=tmp_path / "views")
    filt = StructureAwareFilter("min", min_area=5, cache=cache)
    images = [_image((1, 10, 10), seed) for seed in range(3)]
    outs = [filt(im) for im in images]
    assert len(cache) == 2 and len(list((tmp_path / "views").glob("*.npy"))) == 3
    fresh = FilterCache(max_items=2, cache_dir=tmp_path / "views")  # e.g. another worker or run
    again = StructureAwareFilter("min", min_area=5, cache=fresh)(images[0])
    np.testing.assert_array_equal(again, outs[0])
    assert (fresh.hits, fresh.misses) == (1, 0)


def test_array_key_depends_on_content_dtype_shape_and_params() -> None:
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    keys = {
        array_key(a, 1),
        array_key(a, 2),
        array_key(a.astype(np.float64), 1),
        array_key(a.reshape(4, 3), 1),
        array_key(a + 1, 1),
    }
    assert len(keys) == 5
    assert array_key(a, 1) == array_key(a.copy(), 1) == array_key(np.asfortranarray(a), 1)


def test_random_variant_samples_then_calls_the_core() -> None:
    img = _image((1, 14, 14, 14))
    rand = RandStructureAwareFilter("max", gamma_prob=1.0, gamma_range=(0.5, 1.5), min_area=10).set_random_state(3)
    out = rand(img)
    assert rand.gamma is not None and 0.5 <= rand.gamma <= 1.5
    np.testing.assert_array_equal(out, StructureAwareFilter("max", min_area=10)(img, gamma=rand.gamma))
    np.testing.assert_array_equal(rand(img, randomize=False), out)
    replay = RandStructureAwareFilter("max", gamma_prob=1.0, min_area=10).set_random_state(3)
    np.testing.assert_array_equal(replay(img), out)


def test_random_variant_probabilities() -> None:
    img = _image((1, 12, 12))
    assert RandStructureAwareFilter(prob=0.0)(img) is img
    plain = RandStructureAwareFilter("min", gamma_prob=0.0, min_area=6)
    np.testing.assert_array_equal(plain(img), StructureAwareFilter("min", min_area=6)(img))
    assert plain.gamma is None
    rand = RandStructureAwareFilter(gamma_prob=0.5).set_random_state(0)
    drawn = []
    for _ in range(400):
        rand.randomize()
        drawn.append(rand.gamma)
    with_gamma = [g for g in drawn if g is not None]
    assert 150 < len(with_gamma) < 250  # p = 0.5, as in the paper's code
    assert min(with_gamma) >= 0.5 and max(with_gamma) <= 1.5 and np.std(with_gamma) > 0.2
    keep = RandStructureAwareFilter(gamma_prob=0.0, keep_prob=0.3).set_random_state(1)
    keep.randomize()
    assert keep.seed is not None
    with pytest.raises(ValueError):
        RandStructureAwareFilter(gamma_range=(0.0, 1.0))


def test_dictionary_versions() -> None:
    img = _image((1, 16, 16))
    data = {"image": img, "label": np.zeros((1, 16, 16), np.uint8)}
    out = StructureAwareFilterd("image", "max", min_area=8, output_keys="image_max")(data)
    assert out["image"] is img and set(out) == {"image", "label", "image_max"}
    np.testing.assert_array_equal(out["image_max"], StructureAwareFilter("max", min_area=8)(img))
    inplace = StructureAwareFilterd(["image", "missing"], "min", min_area=8, allow_missing_keys=True)(data)
    np.testing.assert_array_equal(inplace["image"], StructureAwareFilter("min", min_area=8)(img))
    with pytest.raises(ValueError, match="output_keys"):
        StructureAwareFilterd(["image", "label"], output_keys="x")

    rand = RandStructureAwareFilterd(["a", "b"], "max", gamma_prob=1.0, min_area=8).set_random_state(5)
    res = rand({"a": img, "b": img.copy()})
    np.testing.assert_array_equal(res["a"], res["b"])  # one draw per call, shared by the keys
    gamma = rand.filter.gamma
    assert gamma is not None
    np.testing.assert_array_equal(res["a"], StructureAwareFilter("max", min_area=8)(img, gamma=gamma))
