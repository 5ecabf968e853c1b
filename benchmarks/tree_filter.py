"""Benchmark: DSAIF Max-/Min-tree filter on higra (medseg) vs the same filter on scikit-image's max_tree.

The reference builds the same filter from scikit-image: ``area_opening`` (step 1), then ``max_tree`` of the
opened image, the sibling rule on its canonical parent array and a pointer-jumping reconstruction (steps
2-3); the Min-tree via the negated image. Both run on the same 8-bit quantised volume (the paper's
setting) and their results are asserted equal.

Usage:
    python benchmarks/tree_filter.py            # 2D 256x256 and 3D 128^3, smooth and noisy, Max and Min
    python benchmarks/tree_filter.py --quick    # 2D 64x64 and 3D 24^3 (smoke test, a few seconds)
    python benchmarks/tree_filter.py --sizes 256x256 64x64x64 --reference-max-voxels 300000

Prints a markdown table and writes JSON (``--json``, default ``runs/benchmarks/tree_filter.json``).
Needs the ``bench`` extra (scikit-image).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from medseg.transforms.tree_filter import TreeFilterSettings, connected_tree_filter, count_component_nodes, quantise

FULL_SIZES = ("256x256", "128x128x128")
QUICK_SIZES = ("64x64", "24x24x24")


def skimage_reference(
    image: np.ndarray, tree: str = "max", min_area: int = 50, connectivity: int | None = None
) -> np.ndarray:
    """The DSAIF filter built on ``skimage.morphology`` (area_opening + max_tree); same dtype as ``image``.

    Example:
        >>> img = np.random.default_rng(0).integers(0, 4, (12, 12)).astype(np.uint8)
        >>> bool((skimage_reference(img, "min", 5) == connected_tree_filter(img, "min", min_area=5)).all())
        True
    """
    from skimage.morphology import area_opening, max_tree

    if tree == "min":  # Min-tree filter = dual of the Max-tree filter (negation within the dtype's order)
        work = -image.astype(np.int64) if np.issubdtype(image.dtype, np.integer) else -image
        return (-skimage_reference(work, "max", min_area, connectivity)).astype(image.dtype)
    conn = image.ndim if connectivity is None else connectivity
    opened = area_opening(image, area_threshold=min_area, connectivity=conn) if min_area > 1 else image
    parent, traverser = max_tree(opened, connectivity=conn)
    flat, par = opened.ravel(), parent.ravel()
    root = traverser[0]
    canonical = flat[par] != flat  # scikit-image's parent array is canonical: par[p] is a component node
    canonical[root] = True
    non_root = canonical.copy()
    non_root[root] = False
    n_children = np.bincount(par[non_root], minlength=flat.size)
    deleted = ~canonical | (non_root & (n_children[par] == 1))
    target = np.where(deleted, par, np.arange(flat.size))
    while True:  # pointer jumping to the nearest surviving ancestor
        jumped = target[target]
        if np.array_equal(jumped, target):
            break
        target = jumped
    return flat[target].reshape(image.shape)


def make_volume(shape: tuple[int, ...], kind: str, seed: int = 0) -> np.ndarray:
    """``noisy``: uniform noise; ``smooth``: Gaussian-smoothed noise (sigma 3) plus two bright blobs."""
    rng = np.random.default_rng(seed)
    x = rng.random(shape)
    if kind == "smooth":
        x = ndimage.gaussian_filter(x, 3.0)
        grid = np.indices(shape, dtype=np.float64)
        for centre, radius in ((0.35, 0.12), (0.65, 0.18)):
            dist2 = sum((g / s - centre) ** 2 for g, s in zip(grid, shape))
            x = x + 0.05 * (dist2 < radius**2)
    elif kind != "noisy":
        raise ValueError(f"kind must be 'smooth' or 'noisy', got {kind!r}")
    return x.astype(np.float32)


def _best_time(fn: Callable[[], np.ndarray], repeat: int) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out  # type: ignore[return-value]


def run(
    sizes: list[str], kinds: list[str], trees: list[str], min_area: int, repeat: int, reference_max_voxels: int | None
) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        shape = tuple(int(s) for s in size.lower().split("x"))
        for kind in kinds:
            q = quantise(make_volume(shape, kind), 256)[0]
            for tree in trees:
                t_higra, ours = _best_time(
                    lambda: connected_tree_filter(q, tree, min_area=min_area), repeat  # noqa: B023
                )
                row: dict[str, Any] = dict(shape=size, kind=kind, tree=tree, min_area=min_area)
                row["higra_s"] = round(t_higra, 4)
                if reference_max_voxels is None or q.size <= reference_max_voxels:
                    t_ref, ref = _best_time(lambda: skimage_reference(q, tree, min_area), 1)  # noqa: B023
                    if not np.array_equal(ours, ref):
                        raise AssertionError(f"{size} {kind} {tree}: higra and scikit-image results differ")
                    row.update(skimage_s=round(t_ref, 4), speedup=round(t_ref / t_higra, 1), equal=True)
                else:
                    row.update(skimage_s=None, speedup=None, equal=None)
                counts = count_component_nodes(q, TreeFilterSettings(tree, min_area, levels=None))
                row.update(nodes_before=counts.before, nodes_after_area=counts.after_area, nodes_after=counts.after)
                rows.append(row)
                ref_s = "not run" if row["skimage_s"] is None else f"{row['skimage_s']:.3f}s"
                note = f"  {size} {kind} {tree}: higra {t_higra:.3f}s, scikit-image {ref_s}"
                print(note, file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| shape | volume | tree | higra (s) | scikit-image (s) | speed-up | equal "
        "| nodes before | after area | after |",
        "|---|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        ref = "not run" if r["skimage_s"] is None else f"{r['skimage_s']:.3f}"
        speed = "" if r["speedup"] is None else f"{r['speedup']}x"
        equal = "" if r["equal"] is None else "yes"
        lines.append(
            f"| {r['shape']} | {r['kind']} | {r['tree']} | {r['higra_s']:.3f} | {ref} | {speed} | {equal} "
            f"| {r['nodes_before']} | {r['nodes_after_area']} | {r['nodes_after']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"small sizes {QUICK_SIZES} for a smoke test")
    parser.add_argument("--sizes", nargs="+", help=f"shapes like 256x256 or 128x128x128 (default {FULL_SIZES})")
    parser.add_argument("--kinds", nargs="+", default=["smooth", "noisy"], choices=["smooth", "noisy"])
    parser.add_argument("--trees", nargs="+", default=["max", "min"], choices=["max", "min"])
    parser.add_argument("--min-area", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3, help="higra runs per case (best kept); scikit-image runs once")
    parser.add_argument(
        "--reference-max-voxels",
        type=int,
        default=None,
        help="skip scikit-image above this many voxels (it is slow in 3D)",
    )
    parser.add_argument("--json", type=Path, default=Path("runs/benchmarks/tree_filter.json"))
    args = parser.parse_args(argv)
    sizes = args.sizes or list(QUICK_SIZES if args.quick else FULL_SIZES)
    rows = run(sizes, args.kinds, args.trees, args.min_area, args.repeat, args.reference_max_voxels)
    table = markdown(rows)
    print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(python=platform.python_version(), machine=platform.machine(), processor=platform.processor())
    args.json.write_text(json.dumps(dict(meta=meta, results=rows), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
