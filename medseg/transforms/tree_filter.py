"""Max-tree and Min-tree structure-aware image filters of DSAIF, on higra's component trees.

Gu, Sun, Chen, Xiao, Liu, Xu, Najman, "Dual structure-aware image filterings for semi-supervised medical
image segmentation", Medical Image Analysis 2024 (arXiv 2312.07264); original code GuGuLL123/DSAIF-SEMI.

The filter, on one 2D or 3D image:

0. *Quantise*: min-max scale to ``[0, 1]`` (optionally a gamma ``x ** gamma`` first, the paper's random
   contrast), then to ``levels`` integer levels (paper: 8 bits; the code truncates, ``(x * 255).astype(uint8)``,
   hence ``rounding="floor"``). ``levels=None`` keeps exact values (integer or float), no scaling at all.
   ``quantisation="code"`` (default) scales as the code, by ``max - min + 1e-7``, and truncates exactly, so
   the maximum lands on level 254 of 0..255; ``"exact"`` scales by ``max - min`` (the maximum on 255).
1. *Area filter*: build the Max-tree (bright components) or Min-tree (dark components) with 8-connectivity
   in 2D or 26 in 3D (``connectivity`` as in :func:`scipy.ndimage.generate_binary_structure`, default full),
   delete every component node with fewer than ``min_area`` pixels (an area opening / closing).
2. *Sibling filter*: in the tree of the area-filtered image, delete every non-root component node whose
   parent has exactly one child component (it is topologically equivalent to its parent). In higra's trees
   the leaves are the pixels: only component nodes count as children.
3. *Reconstruct*: each pixel takes the level of the nearest surviving ancestor of its component node, so a
   chain of single children collapses to the level where the component first separates; the levels are
   mapped back linearly to the original intensity range (the gamma is not undone, as in the code).

The tree of the area-filtered image is exactly the area-pruned tree (every surviving node keeps pixels
at its own level), so both steps run on one tree here; tests check this against a literal rebuild.

Paper vs code (flags, paper default):

* The paper's experiments used the repository's C++ trees (``tree_process_3D_final``: area pruning, then
  merging each single child into its parent with all its pixels); its later higra path
  (``tree_process_3D_higra_final``) rebuilds the tree of the area-filtered image and also passes a
  sibling condition for the pixels, but ``hg.reconstruct_leaf_data`` always deletes the leaves of a
  component tree, so both paths compute the filter above (checked in the tests).
* ``keep_prob`` (default 0, the released config's ``tree_topoprob``): the C++ path's random variant keeps
  each would-be-deleted node with this probability (``tree_topopruning_random``).
* The area filter is on (``min_area=50``, config ``tree_areathrehold``); the first higra version of the code
  had none (``min_area=0``).
* ``quantisation`` (default ``"code"``): the code scales by ``max - min + 1e-7`` (``dataset/semi.py``, 3D;
  its 2D path ``+ 1e-8``) and truncates, so the maximum maps to level 254 and every value sits a hair below
  its exact level: one grey level lower for 13-100 % of the voxels of a Min-tree image than with ``"exact"``,
  which scales by ``max - min`` (the maximum on the top level) and floors with a 1e-4 level tolerance
  against float error (so that re-quantising a float32 output gives back its levels).

Example:
    >>> img = np.random.default_rng(0).integers(0, 8, (32, 32)).astype(np.float32)
    >>> out = structure_aware_filter(img, "max", min_area=10)
    >>> out.shape, out.dtype
    ((32, 32), dtype('float32'))
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import higra as hg
import numpy as np
from scipy import ndimage

TreeType = Literal["max", "min"]
Rounding = Literal["floor", "nearest"]
Quantisation = Literal["code", "exact"]
QUANTISATIONS: tuple[str, ...] = ("code", "exact")
#: the code's ``max - min + 1e-7`` (DSAIF-SEMI ``dataset/semi.py``)
CODE_SCALE_EPS = 1e-7

# Tolerance (in level units) of the floor quantisation: truncation maps a value that should land exactly on
# a level to the level below when float rounding puts it a hair under. Re-quantising a float32 output of
# this filter is off by up to ~5e-5 levels (float32 has 24 bits), which would drop about half the levels;
# we count values within 1e-4 below a level as on it.
_FLOOR_EPS = 1e-4


@dataclass(frozen=True)
class TreeFilterSettings:
    """The deterministic settings of one structure-aware filter (validated; hashable, so usable as a cache key).

    Args:
        tree: ``"max"`` (Max-tree: bright components) or ``"min"`` (Min-tree: dark components).
        min_area: component nodes with fewer pixels are deleted (paper/code: 50); 0 or 1 disables step 1.
        levels: number of quantisation levels after min-max scaling (paper: 256); ``None`` filters the
            exact values (integer images unchanged in dtype; float images on their distinct values).
        rounding: ``"floor"`` (code: truncation of ``x * (levels - 1)``) or ``"nearest"``.
        connectivity: neighbourhood as in ``scipy.ndimage.generate_binary_structure``: 1 = faces
            (4 in 2D, 6 in 3D) ... ``ndim`` = full (8 in 2D, 26 in 3D, the paper's); ``None`` = full.
        quantisation: ``"code"`` (default: scale by ``max - min + 1e-7`` and truncate, the maximum on level
            254 of 256) or ``"exact"`` (scale by ``max - min``, the maximum on the top level).
    """

    tree: TreeType = "max"
    min_area: int = 50
    levels: int | None = 256
    rounding: Rounding = "floor"
    connectivity: int | None = None
    quantisation: Quantisation = "code"

    def __post_init__(self) -> None:
        if self.tree not in ("max", "min"):
            raise ValueError(f"tree must be 'max' or 'min', got {self.tree!r}")
        if int(self.min_area) != self.min_area or self.min_area < 0:
            raise ValueError(f"min_area must be a non-negative integer, got {self.min_area!r}")
        if self.levels is not None and (int(self.levels) != self.levels or not 2 <= self.levels <= 2**31):
            raise ValueError(f"levels must be None or an integer in [2, 2**31], got {self.levels!r}")
        if self.rounding not in ("floor", "nearest"):
            raise ValueError(f"rounding must be 'floor' or 'nearest', got {self.rounding!r}")
        if self.connectivity is not None and self.connectivity not in (1, 2, 3):
            raise ValueError(f"connectivity must be None or 1..ndim, got {self.connectivity!r}")
        if self.quantisation not in QUANTISATIONS:
            raise ValueError(f"quantisation must be 'code' or 'exact', got {self.quantisation!r}")


class NodeCounts(NamedTuple):
    """Component nodes (pixels not counted) of a Max-/Min-tree: before, after step 1, after both steps."""

    before: int
    after_area: int
    after: int


def _check_image(image: np.ndarray, connectivity: int | None) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"expected a 2D or 3D image (spatial dims only), got shape {image.shape}")
    if image.size == 0:
        raise ValueError("expected a non-empty image")
    if connectivity is not None and connectivity > image.ndim:
        raise ValueError(f"connectivity {connectivity} exceeds the image dimensionality {image.ndim}")
    if image.dtype == np.bool_:
        return image.astype(np.uint8)
    if image.dtype == np.float16:
        return image.astype(np.float32)
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise ValueError(f"expected an integer or float image, got dtype {image.dtype}")
    return np.ascontiguousarray(image)


@functools.lru_cache(maxsize=32)
def neighbour_graph(shape: tuple[int, ...], connectivity: int | None = None) -> Any:
    """higra implicit grid graph of ``shape`` with the given connectivity (default full: 8 in 2D, 26 in 3D)."""
    ndim = len(shape)
    mask = ndimage.generate_binary_structure(ndim, ndim if connectivity is None else connectivity)
    mask = mask.astype(np.int64)
    mask[(1,) * ndim] = 0
    return hg.get_nd_regular_implicit_graph(tuple(int(s) for s in shape), hg.mask_2_neighbours(mask))


def component_tree(
    image: np.ndarray, tree: TreeType = "max", connectivity: int | None = None
) -> tuple[Any, np.ndarray]:
    """Max-tree or Min-tree of a 2D/3D image: ``(higra Tree, altitudes)``.

    The tree's first ``image.size`` vertices are the pixels (leaves, in C order); the others are the
    component nodes, with the altitude (grey level) at which each component appears.
    """
    image = _check_image(image, connectivity)
    graph = neighbour_graph(image.shape, connectivity)
    if tree == "max":
        return hg.component_tree_max_tree(graph, image)
    if tree == "min":
        return hg.component_tree_min_tree(graph, image)
    raise ValueError(f"tree must be 'max' or 'min', got {tree!r}")


def _surviving_components(hg_tree: Any, min_area: int) -> np.ndarray:
    """Boolean per vertex: component node with ``area >= min_area`` (the root always survives)."""
    n_leaves = hg_tree.num_leaves()
    alive = np.zeros(hg_tree.num_vertices(), dtype=bool)
    alive[n_leaves:] = hg.attribute_area(hg_tree)[n_leaves:] >= min_area
    alive[hg_tree.root()] = True
    return alive


def deleted_nodes(
    hg_tree: Any,
    min_area: int = 50,
    keep_prob: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Boolean per tree vertex: deleted by steps 1 and 2 (reconstruct with ``hg.reconstruct_leaf_data``).

    Args:
        hg_tree: a higra component tree whose leaves are the pixels.
        min_area: step 1 threshold.
        keep_prob: probability to keep a node that step 2 would delete (C++ code's random variant).
        rng: generator for ``keep_prob`` (a fresh default one if None).
    """
    if not 0.0 <= keep_prob <= 1.0:
        raise ValueError(f"keep_prob must be in [0, 1], got {keep_prob}")
    root = hg_tree.root()
    parents = hg_tree.parents()
    alive = _surviving_components(hg_tree, min_area)
    child = alive.copy()
    child[root] = False
    n_children = np.bincount(parents[child], minlength=hg_tree.num_vertices())  # surviving component children
    sole = child & (n_children[parents] == 1)
    if keep_prob > 0.0:
        sole &= (rng or np.random.default_rng()).random(sole.shape[0]) >= keep_prob
    return ~alive | sole  # pixels (leaves) count as deleted: they take the level of their component node


def connected_tree_filter(
    image: np.ndarray,
    tree: TreeType = "max",
    *,
    min_area: int = 50,
    connectivity: int | None = None,
    keep_prob: float = 0.0,
    seed: int | None = None,
) -> np.ndarray:
    """Steps 1-3 on the exact values of ``image`` (no scaling, no quantisation); same shape and dtype.

    Args:
        image: 2D ``(H, W)`` or 3D ``(D, H, W)`` integer or float array.
        tree, min_area, connectivity: see :class:`TreeFilterSettings`.
        keep_prob, seed: C++ code's random sibling filter (keep each deletable node with ``keep_prob``).
    """
    image = _check_image(image, connectivity)
    hg_tree, altitudes = component_tree(image, tree, connectivity)
    rng = np.random.default_rng(seed) if keep_prob > 0.0 else None
    deleted = deleted_nodes(hg_tree, min_area, keep_prob, rng)
    out = hg.reconstruct_leaf_data(hg_tree, altitudes, deleted)
    return np.asarray(out).reshape(image.shape).astype(image.dtype, copy=False)


def _level_dtype(levels: int) -> type[np.integer]:
    return np.uint8 if levels <= 2**8 else np.uint16 if levels <= 2**16 else np.int64


def quantise(
    image: np.ndarray,
    levels: int | None = 256,
    *,
    value_range: tuple[float, float] | None = None,
    gamma: float | None = None,
    rounding: Rounding = "floor",
    quantisation: Quantisation = "code",
) -> tuple[np.ndarray, float, float]:
    """Min-max scale (to ``value_range`` if given, values outside clipped), gamma, quantise.

    ``quantisation="code"`` divides by ``hi - lo + 1e-7`` and floors exactly (``(x * 255).astype(uint8)`` in the
    code: the maximum lands one level below the top); ``"exact"`` divides by ``hi - lo`` and floors with a
    1e-4 level tolerance (the maximum on the top level). Computed in float64.

    Returns:
        ``(q, lo, hi)``: ``q`` integer levels ``0..levels-1`` (float ``[0, 1]`` if ``levels`` is None) and
        the range used, for :func:`dequantise`. A constant image gives all zeros.
    """
    if gamma is not None and not gamma > 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    x = np.asarray(image, dtype=np.float64)
    lo, hi = (float(x.min()), float(x.max())) if value_range is None else (float(value_range[0]), float(value_range[1]))
    if not hi >= lo:
        raise ValueError(f"value_range must be (low, high) with low <= high, got {value_range}")
    if quantisation not in QUANTISATIONS:
        raise ValueError(f"quantisation must be 'code' or 'exact', got {quantisation!r}")
    code = quantisation == "code"
    denominator = (hi - lo) + (CODE_SCALE_EPS if code else 0.0)
    x = np.clip((x - lo) / denominator, 0.0, 1.0) if hi > lo else np.zeros_like(x)
    if gamma is not None:
        x = x**gamma
    if levels is None:
        return x, lo, hi
    scaled = x * (levels - 1)
    q = np.floor(scaled + (0.0 if code else _FLOOR_EPS)) if rounding == "floor" else np.rint(scaled)
    return np.clip(q, 0, levels - 1).astype(_level_dtype(levels)), lo, hi


def dequantise(q: np.ndarray, levels: int | None, lo: float, hi: float) -> np.ndarray:
    """Inverse of :func:`quantise`'s scaling (not of its gamma): levels back to ``[lo, hi]``, float32."""
    unit = np.asarray(q, dtype=np.float64) if levels is None else np.asarray(q, dtype=np.float64) / (levels - 1)
    return (lo + unit * (hi - lo)).astype(np.float32)


def structure_aware_filter(
    image: np.ndarray,
    tree: TreeType = "max",
    *,
    min_area: int = 50,
    levels: int | None = 256,
    rounding: Rounding = "floor",
    connectivity: int | None = None,
    value_range: tuple[float, float] | None = None,
    gamma: float | None = None,
    keep_prob: float = 0.0,
    seed: int | None = None,
    quantisation: Quantisation = "code",
) -> np.ndarray:
    """DSAIF Max-tree or Min-tree filter of one 2D ``(H, W)`` or 3D ``(D, H, W)`` image.

    Args:
        image: integer or float array (spatial dims only; see the transforms for channels).
        tree, min_area, levels, rounding, connectivity, quantisation: see :class:`TreeFilterSettings`.
        value_range: scale to this ``(low, high)`` instead of the image's own min/max (the 3D code filters
            a random crop scaled by the *whole volume's* range).
        gamma: contrast ``x ** gamma`` after scaling, before quantising (paper: random, p = 0.5, 0.5-1.5).
        keep_prob, seed: see :func:`connected_tree_filter`.

    Returns:
        The filtered image in the input's range: float32, or the input dtype when ``levels`` and ``gamma``
        are both None (exact values).
    """
    settings = TreeFilterSettings(tree, min_area, levels, rounding, connectivity, quantisation)
    image = _check_image(image, connectivity)
    kwargs: dict[str, Any] = dict(
        min_area=settings.min_area,
        connectivity=connectivity,
        keep_prob=keep_prob,
        seed=seed,
    )
    if levels is None and gamma is None and value_range is None:
        return connected_tree_filter(image, tree, **kwargs)
    q, lo, hi = quantise(image, levels, value_range=value_range, gamma=gamma, rounding=rounding, quantisation=quantisation)
    return dequantise(connected_tree_filter(q, tree, **kwargs), levels, lo, hi)


def count_component_nodes(
    image: np.ndarray, settings: TreeFilterSettings | None = None, *, value_range: tuple[float, float] | None = None
) -> NodeCounts:
    """Number of component nodes of the image's tree before filtering, after step 1 and after the filter.

    Args:
        image: 2D or 3D array, quantised as the filter does (``settings.levels``, ``value_range``).
        settings: the filter's settings (default: the paper's Max-tree filter).

    ``after`` counts the nodes of the tree rebuilt from the filtered image (same quantisation).

    Example:
        >>> img = np.random.default_rng(0).random((32, 32))
        >>> counts = count_component_nodes(img, TreeFilterSettings("min", min_area=5))
        >>> counts.before >= counts.after_area >= counts.after
        True
    """
    s = settings or TreeFilterSettings()
    image = _check_image(image, s.connectivity)
    if s.levels is not None or value_range is not None:
        image = quantise(image, s.levels, value_range=value_range, rounding=s.rounding, quantisation=s.quantisation)[0]
    hg_tree, _ = component_tree(image, s.tree, s.connectivity)
    n_leaves = hg_tree.num_leaves()
    before = hg_tree.num_vertices() - n_leaves
    after_area = int(_surviving_components(hg_tree, s.min_area)[n_leaves:].sum())
    filtered = connected_tree_filter(image, s.tree, min_area=s.min_area, connectivity=s.connectivity)
    rebuilt, _ = component_tree(filtered, s.tree, s.connectivity)
    return NodeCounts(before, after_area, rebuilt.num_vertices() - rebuilt.num_leaves())
