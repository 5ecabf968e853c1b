"""DSAIF Max-/Min-tree filter (medseg.transforms.tree_filter) against a brute-force reference.

The reference builds the component tree straight from the connected components (scipy.ndimage.label) of
every threshold set, then applies the three steps literally, rebuilding the tree of the area-filtered image
as the paper's code does.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import higra as hg
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from medseg.transforms.tree_filter import (
    component_tree,
    connected_tree_filter,
    count_component_nodes,
    neighbour_graph,
    TreeFilterSettings,
    quantise,
    structure_aware_filter,
)

# ---------------------------------------------------------------- brute-force reference (Max-tree)


def bf_nodes(f: np.ndarray, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    """Component nodes of the Max-tree: (masks (N, P) bool, levels (N,)); a set seen at several
    thresholds is one node, at the highest of them."""
    struct = ndimage.generate_binary_structure(f.ndim, connectivity)
    index: dict[bytes, int] = {}
    masks: list[np.ndarray] = []
    levels: list[int] = []
    for lam in np.unique(f):
        labels, n = ndimage.label(f >= lam, structure=struct)
        for k in range(1, n + 1):
            m = (labels == k).ravel()
            key = m.tobytes()
            if key in index:
                levels[index[key]] = lam
            else:
                index[key] = len(masks)
                masks.append(m)
                levels.append(lam)
    return np.array(masks), np.array(levels)


def bf_parents(masks: np.ndarray) -> np.ndarray:
    """Parent of each node = the smallest node strictly containing it (-1 for the root)."""
    sizes = masks.sum(1)
    overlap = masks.astype(np.int64) @ masks.T.astype(np.int64)
    contains = (overlap == sizes[:, None]) & (sizes[None, :] > sizes[:, None])  # [i, j]: j strictly contains i
    cand = np.where(contains, sizes[None, :], np.iinfo(np.int64).max)
    parents = cand.argmin(1)
    parents[~contains.any(1)] = -1
    return parents


def bf_reconstruct(masks: np.ndarray, levels: np.ndarray, keep: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Each pixel takes the level of the smallest kept node containing it (its nearest surviving ancestor)."""
    sizes = np.where(masks[keep], masks[keep].sum(1)[:, None], np.iinfo(np.int64).max)
    return levels[keep][sizes.argmin(0)].reshape(shape)


def bf_filter_max(f: np.ndarray, min_area: int, connectivity: int) -> np.ndarray:
    masks, levels = bf_nodes(f, connectivity)
    sizes = masks.sum(1)
    f1 = bf_reconstruct(masks, levels, (sizes >= min_area) | (sizes == f.size), f.shape)  # step 1
    masks, levels = bf_nodes(f1, connectivity)  # rebuild the tree of the area-filtered image
    parents = bf_parents(masks)
    n_children = np.bincount(parents[parents >= 0], minlength=len(masks))
    keep = (parents < 0) | (n_children[np.maximum(parents, 0)] != 1)  # step 2
    return bf_reconstruct(masks, levels, keep, f.shape)  # step 3


def bf_filter(f: np.ndarray, tree: str, min_area: int, connectivity: int) -> np.ndarray:
    f = f.astype(np.int64)
    return bf_filter_max(f, min_area, connectivity) if tree == "max" else -bf_filter_max(-f, min_area, connectivity)


small_images = st.one_of(
    arrays(np.uint8, st.tuples(st.integers(2, 12), st.integers(2, 12)), elements=st.integers(0, 4)),
    arrays(np.uint8, st.tuples(st.integers(2, 6), st.integers(2, 6), st.integers(2, 6)), elements=st.integers(0, 4)),
)


def assert_every_node_has_sibling(g: np.ndarray, tree: str, min_area: int, connectivity: int) -> None:
    work = g.astype(np.int64) if tree == "max" else -g.astype(np.int64)
    masks, _ = bf_nodes(work, connectivity)
    parents = bf_parents(masks)
    n_children = np.bincount(parents[parents >= 0], minlength=len(masks))
    assert (n_children[parents[parents >= 0]] >= 2).all(), "a non-root node without sibling survived"
    assert (masks.sum(1) >= min(min_area, g.size)).all(), "a node smaller than min_area survived"


# ---------------------------------------------------------------- equality with the reference


@pytest.mark.parametrize("shape", [(12, 12), (8, 8, 8)])
@pytest.mark.parametrize("tree", ["max", "min"])
def test_matches_brute_force_on_seeded_images(shape: tuple[int, ...], tree: str) -> None:
    for seed in range(4):
        rng = np.random.default_rng(seed)
        img = rng.integers(0, 3 + seed, shape).astype(np.uint8)
        for connectivity in (1, len(shape)):
            for min_area in (1, 4, 10):
                ours = connected_tree_filter(img, tree, min_area=min_area, connectivity=connectivity)
                ref = bf_filter(img, tree, min_area, connectivity)
                np.testing.assert_array_equal(ours, ref, err_msg=f"seed {seed} conn {connectivity} area {min_area}")


@settings(max_examples=60, deadline=None)
@given(img=small_images, tree=st.sampled_from(["max", "min"]), min_area=st.integers(0, 12), full=st.booleans())
def test_matches_brute_force_property(img: np.ndarray, tree: str, min_area: int, full: bool) -> None:
    connectivity = img.ndim if full else 1
    ours = connected_tree_filter(img, tree, min_area=min_area, connectivity=connectivity)
    np.testing.assert_array_equal(ours, bf_filter(img, tree, min_area, connectivity))
    assert_every_node_has_sibling(ours, tree, min_area, connectivity)


def test_default_connectivity_is_8_in_2d_and_26_in_3d() -> None:
    for shape, degree in (((5, 5), 8), ((5, 5, 5), 26)):
        graph = neighbour_graph(shape)
        centre = np.ravel_multi_index(tuple(s // 2 for s in shape), shape)
        assert len(list(graph.adjacent_vertices(centre))) == degree
    # two 4-pixel blobs touching at a corner: one 8-pixel component by default, two with connectivity 1;
    # a third 9-pixel blob gives the root a second child
    img = np.zeros((10, 10), np.uint8)
    img[1:3, 1:3] = 5
    img[3:5, 3:5] = 5
    img[6:9, 6:9] = 5
    assert (connected_tree_filter(img, min_area=5) == 5).sum() == 17
    assert connected_tree_filter(img, min_area=5, connectivity=1).max() == 0  # small blobs gone, third is alone


def test_code_higra_path_computes_the_same_filter() -> None:
    """The released higra path (rebuild + sibling condition also on the pixels) equals ours: higra's
    reconstruct_leaf_data always deletes component-tree leaves, so the pixel condition has no effect."""

    def code_path(img: np.ndarray, tree: str, area_threshold: int) -> np.ndarray:
        graph = neighbour_graph(img.shape)
        build = hg.component_tree_max_tree if tree == "max" else hg.component_tree_min_tree
        t0, a0 = build(graph, img)
        f1 = hg.reconstruct_leaf_data(t0, a0, hg.attribute_area(t0) < area_threshold)
        t1, a1 = build(graph, f1)
        weight = np.ones(t1.num_vertices())
        weight[: t1.num_leaves()] = 0
        n_siblings = hg.propagate_parallel(t1, hg.accumulate_parallel(t1, weight, hg.Accumulators.sum))
        n_siblings[t1.root()] = 0
        return np.asarray(hg.reconstruct_leaf_data(t1, a1, n_siblings == 1)).reshape(img.shape)

    rng = np.random.default_rng(3)
    for shape in ((16, 16), (8, 9, 10)):
        img = rng.integers(0, 6, shape).astype(np.uint8)
        for tree in ("max", "min"):
            np.testing.assert_array_equal(connected_tree_filter(img, tree, min_area=6), code_path(img, tree, 6))


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("shape", [(7, 9), (4, 5, 6)])
def test_constant_image_is_unchanged(shape: tuple[int, ...]) -> None:
    for value, dtype in ((3, np.int16), (-2.5, np.float32), (0, np.uint8)):
        img = np.full(shape, value, dtype=dtype)
        for tree in ("max", "min"):
            exact = structure_aware_filter(img, tree, levels=None)
            assert exact.dtype == img.dtype
            np.testing.assert_array_equal(exact, img)
            np.testing.assert_array_equal(structure_aware_filter(img, tree), img.astype(np.float32))


def test_commutes_with_right_angle_rotations_and_flips() -> None:
    """Why a trainer may cache the un-rotated view and rotate it afterwards (the code rotates, then filters)."""
    img = np.random.default_rng(8).random((10, 12, 14)).astype(np.float32)
    for tree in ("max", "min"):
        base = structure_aware_filter(img, tree, min_area=12)
        for axes in ((0, 1), (1, 2), (0, 2)):
            for k in (1, 2, 3):
                rotated = structure_aware_filter(np.rot90(img, k, axes), tree, min_area=12)
                np.testing.assert_array_equal(rotated, np.rot90(base, k, axes))
        np.testing.assert_array_equal(structure_aware_filter(img[:, ::-1], tree, min_area=12), base[:, ::-1])


@settings(max_examples=40, deadline=None)
@given(img=small_images, tree=st.sampled_from(["max", "min"]), min_area=st.integers(0, 12))
def test_idempotent_on_levels(img: np.ndarray, tree: str, min_area: int) -> None:
    once = connected_tree_filter(img, tree, min_area=min_area)
    np.testing.assert_array_equal(connected_tree_filter(once, tree, min_area=min_area), once)


@settings(max_examples=40, deadline=None)
@given(img=small_images, min_area=st.integers(0, 12), full=st.booleans())
def test_min_tree_is_dual_of_max_tree(img: np.ndarray, min_area: int, full: bool) -> None:
    f = img.astype(np.int16)
    connectivity = img.ndim if full else 1
    np.testing.assert_array_equal(
        connected_tree_filter(f, "min", min_area=min_area, connectivity=connectivity),
        -connected_tree_filter(-f, "max", min_area=min_area, connectivity=connectivity),
    )


def test_min_tree_dual_after_8_bit_quantisation() -> None:
    # values already on the 256 levels (0 and 255 present) quantise to themselves, and the negated image to
    # 255 - itself, so the quantised transform is exactly self-dual here.
    img = np.random.default_rng(1).integers(0, 256, (20, 20)).astype(np.float32)
    img[0, 0], img[-1, -1] = 0, 255
    dual = -structure_aware_filter(-img, "max", min_area=5, quantisation="exact")
    np.testing.assert_allclose(structure_aware_filter(img, "min", min_area=5, quantisation="exact"), dual, atol=1e-4)


def _two_blobs() -> np.ndarray:
    """Background 0; blob A at 100 with a 255 core (the core is A's only child: it is flattened to 100);
    blob B at 61. After one pass the maximum drops from 255 to 100."""
    img = np.zeros((24, 24), np.float32)
    img[2:12, 2:12] = 100
    img[4:10, 4:10] = 255
    img[14:22, 14:22] = 61
    return img


def test_quantised_filter_is_not_idempotent_when_the_range_shrinks() -> None:
    """Why the transform (levels=256, own min/max) is idempotent only up to one quantisation step.

    The sibling filter can remove the brightest (Max-tree) or darkest (Min-tree) levels; the second pass
    then min-max scales the smaller range again and re-quantises (floor), which moves levels by less than
    one step. The flat zones and their order are unchanged (the filter itself is idempotent on levels).
    """
    img = _two_blobs()
    once = structure_aware_filter(img, "max", min_area=10, quantisation="exact")
    assert once.max() == 100  # the 255 core collapsed onto its parent's level
    twice = structure_aware_filter(once, "max", min_area=10, quantisation="exact")
    assert not np.array_equal(twice, once)  # 61 -> floor(61 / 100 * 255) / 255 * 100 = 60.78...
    step = (once.max() - once.min()) / 255
    assert np.abs(twice - once).max() <= step * (1 + 1e-6)
    np.testing.assert_array_equal(np.unique(once, return_inverse=True)[1], np.unique(twice, return_inverse=True)[1])


@pytest.mark.parametrize("rounding", ["nearest", "floor"])
def test_quantised_filter_is_idempotent_with_a_fixed_value_range(rounding: str) -> None:
    # an offset range: float32 outputs re-quantised without the floor tolerance would drop levels
    img = (np.random.default_rng(2).random((16, 16, 16)) * 4.7 - 1.3).astype(np.float32)
    kwargs = dict(min_area=8, value_range=(-1.3, 3.4), rounding=rounding, quantisation="exact")
    once = structure_aware_filter(img, "min", **kwargs)
    np.testing.assert_array_equal(structure_aware_filter(once, "min", **kwargs), once)


# ---------------------------------------------------------------- quantisation, gamma, random sibling filter


def test_quantise_uint8_full_range_is_identity_and_floor_matches_the_code() -> None:
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    q, lo, hi = quantise(img, 256, quantisation="exact")
    assert (lo, hi) == (0.0, 255.0) and q.dtype == np.uint8
    np.testing.assert_array_equal(q, img)
    x = np.array([[0.0, 0.2, 0.5, 1.0]])
    np.testing.assert_array_equal(quantise(x, 256, quantisation="exact")[0], (x * 255).astype(np.uint8))  # truncation
    np.testing.assert_array_equal(quantise(x, 256, rounding="nearest", quantisation="exact")[0], [[0, 51, 128, 255]])
    assert quantise(np.zeros((3, 3)), 256)[0].max() == 0
    assert quantise(img, 4096)[0].dtype == np.uint16


def _code_quantisation(img: np.ndarray, lo: float, hi: float, gamma: float | None = None) -> np.ndarray:
    """The 3D code's 8-bit step, literally: semi.py's min-max with + 1e-7, the gamma on [0, 1), truncation."""
    unit = (img.astype(np.float64) - lo) / (hi - lo + 1e-7)
    if gamma is not None:
        unit = unit**gamma
    return (unit * 255).astype(np.uint8)


def test_code_quantisation_is_the_default_and_puts_the_maximum_on_254() -> None:
    from scipy.ndimage import gaussian_filter

    img = gaussian_filter(np.random.default_rng(5).normal(size=(12, 13, 14)), 1.5) * 400 + 100  # smooth blobs
    lo, hi = float(img.min()), float(img.max())
    q = quantise(img, 256)[0]
    assert q.max() == 254 and quantise(img, 256, quantisation="exact")[0].max() == 255
    np.testing.assert_array_equal(q, _code_quantisation(img, lo, hi))
    np.testing.assert_array_equal(quantise(img, 256, gamma=1.3)[0], _code_quantisation(img, lo, hi, 1.3))
    wide = (lo - 50.0, hi + 20.0)  # a crop scaled by its volume's range (the 3D code)
    np.testing.assert_array_equal(quantise(img, 256, value_range=wide)[0], _code_quantisation(img, *wide))
    # the filtered image: levels of the code's quantisation mapped back by level / 255 * (hi - lo) + lo
    for tree in ("max", "min"):
        out = structure_aware_filter(img, tree, min_area=6)
        expected = connected_tree_filter(_code_quantisation(img, lo, hi), tree, min_area=6) / 255 * (hi - lo) + lo
        np.testing.assert_allclose(out, expected.astype(np.float32), rtol=1e-6)
        exact = structure_aware_filter(img, tree, min_area=6, quantisation="exact")
        assert len(np.unique(out)) > 5
        step = (hi - lo) / 255
        assert np.abs(out - exact).max() <= 1.01 * step
        if tree == "min":  # the Min-tree's root sits at the maximum: one level lower wherever a chain collapsed onto it
            assert (np.abs(out - exact) > 0.5 * step).mean() > 0.1


def test_quantisation_is_a_setting() -> None:
    assert TreeFilterSettings().quantisation == "code"
    img = np.random.default_rng(6).random((20, 20))
    code = count_component_nodes(img, TreeFilterSettings("min", 4))
    exact = count_component_nodes(img, TreeFilterSettings("min", 4, quantisation="exact"))
    assert code.before > 0 and exact.before > 0
    with pytest.raises(ValueError, match="quantisation"):
        TreeFilterSettings(quantisation="round")


def test_gamma_and_range() -> None:
    img = np.random.default_rng(4).normal(size=(32, 32)).astype(np.float32)
    base = structure_aware_filter(img, "max", min_area=10)
    np.testing.assert_array_equal(structure_aware_filter(img, "max", min_area=10, gamma=1.0), base)
    dark = structure_aware_filter(img, "max", min_area=10, gamma=1.5)
    assert not np.array_equal(dark, base)
    for out in (base, dark):
        assert out.dtype == np.float32 and img.min() - 1e-5 <= out.min() and out.max() <= img.max() + 1e-5
    assert dark.mean() < base.mean()  # gamma > 1 darkens the [0, 1] image and is not undone


def test_keep_prob_random_sibling_filter() -> None:
    img = np.random.default_rng(5).integers(0, 6, (20, 20)).astype(np.uint8)
    masks, levels = bf_nodes(img.astype(np.int64), 2)
    sizes = masks.sum(1)
    area_only = bf_reconstruct(masks, levels, (sizes >= 6) | (sizes == img.size), img.shape)
    # keep_prob=1 keeps every node: only the area filter acts
    np.testing.assert_array_equal(connected_tree_filter(img, min_area=6, keep_prob=1.0, seed=0), area_only)
    np.testing.assert_array_equal(connected_tree_filter(img, min_area=6, keep_prob=0.0), bf_filter(img, "max", 6, 2))
    a = connected_tree_filter(img, min_area=6, keep_prob=0.5, seed=7)
    np.testing.assert_array_equal(a, connected_tree_filter(img, min_area=6, keep_prob=0.5, seed=7))


def test_node_counts() -> None:
    img = np.random.default_rng(6).integers(0, 5, (12, 12)).astype(np.uint8)
    counts = count_component_nodes(img, TreeFilterSettings("max", min_area=4, levels=None))
    masks, _ = bf_nodes(img.astype(np.int64), 2)
    assert counts.before == len(masks)
    assert counts.after_area == int(((masks.sum(1) >= 4) | (masks.sum(1) == img.size)).sum())
    assert counts.after == len(bf_nodes(bf_filter(img, "max", 4, 2), 2)[0])
    assert counts.before > counts.after_area > counts.after >= 1
    assert count_component_nodes(img[:3, :3], TreeFilterSettings(levels=None)).after_area == 1  # the root stays
    tree, _ = component_tree(img, "min")
    counts = count_component_nodes(img, TreeFilterSettings("min", min_area=0, levels=None))
    assert counts.before == tree.num_vertices() - tree.num_leaves()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(tree="mid"),
        dict(min_area=-1),
        dict(levels=1),
        dict(rounding="ceil"),
        dict(connectivity=4),
        dict(gamma=0.0),
        dict(keep_prob=2.0),
    ],
)
def test_invalid_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        structure_aware_filter(np.zeros((4, 4)), **kwargs)


def test_invalid_images() -> None:
    for bad in (np.zeros(5), np.zeros((2, 3, 4, 5)), np.zeros((0, 3)), np.array([["a", "b"]])):
        with pytest.raises(ValueError):
            structure_aware_filter(bad)
    with pytest.raises(ValueError):
        structure_aware_filter(np.zeros((4, 4)), connectivity=3)


def _benchmark_module():  # benchmarks/ is a folder of scripts, not part of the installed package
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "tree_filter.py"
    spec = importlib.util.spec_from_file_location("bench_tree_filter", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    return bench


def test_scikit_image_reference_of_the_benchmark_agrees() -> None:
    bench = _benchmark_module()
    for shape in ((20, 20), (8, 8, 8)):
        q = quantise(bench.make_volume(shape, "noisy"), 256)[0]
        for tree in ("max", "min"):
            ours = connected_tree_filter(q, tree, min_area=6)
            np.testing.assert_array_equal(bench.skimage_reference(q, tree, 6), ours)


def test_benchmark_script_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    args = ["--sizes", "16x16", "8x8x8", "--repeat", "1", "--min-area", "5", "--json", str(out)]
    assert _benchmark_module().main([*args, "--reference-max-voxels", "300"]) == 0
    rows = json.loads(out.read_text())["results"]
    assert len(rows) == 8 and {r["shape"] for r in rows} == {"16x16", "8x8x8"}
    assert all(r["equal"] for r in rows if r["shape"] == "16x16")
    assert all(r["skimage_s"] is None for r in rows if r["shape"] == "8x8x8")  # 512 voxels: reference skipped
    assert "| shape |" in capsys.readouterr().out
