"""Case-level evaluation of label maps (``medseg evaluate``, the demo, the claim experiments)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegInputError
from medseg.io.geometry import Geometry
from medseg.io.image_io import case_name, is_image_file, read_image
from medseg.metrics.dice import dice_from_counts, iou_from_counts, label_counts
from medseg.metrics.surface import hd95, surface_dice

METRICS = ("dice", "iou", "hd95_mm", "surface_dice", "volume_pred_ml", "volume_ref_ml", "volume_diff_ml")


def evaluate_arrays(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    labels: Sequence[int] | None = None,
    tolerance_mm: float = 1.0,
    case: str = "case",
) -> list[dict[str, Any]]:
    """One row per label: Dice, IoU, HD95 (mm), surface Dice at ``tolerance_mm``, volumes (ml).

    ``labels`` defaults to every non-zero value present in either map. Empty-mask policy: see
    :mod:`medseg.metrics.surface` (never NaN).
    """
    if labels is None:
        labels = sorted((set(np.unique(pred).tolist()) | set(np.unique(ref).tolist())) - {0})
    counts = label_counts(pred, ref, labels).numpy()
    voxel_ml = float(np.prod(spacing)) / 1000.0
    rows = []
    for label, c, d, j in zip(labels, counts, dice_from_counts(counts), iou_from_counts(counts)):
        p, r = pred == label, ref == label
        vol_p, vol_r = (c[0] + c[1]) * voxel_ml, (c[0] + c[2]) * voxel_ml
        rows.append(
            {
                "case": case,
                "label": int(label),
                "dice": float(d),
                "iou": float(j),
                "hd95_mm": hd95(p, r, spacing),
                "surface_dice": surface_dice(p, r, spacing, tolerance_mm),
                "volume_pred_ml": vol_p,
                "volume_ref_ml": vol_r,
                "volume_diff_ml": vol_p - vol_r,
            }
        )
    return rows


def read_pair(pred_path: str | Path, ref_path: str | Path) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """Read a prediction and its reference; their geometries must agree (1e-4)."""
    pred, g_pred = read_image(pred_path, "label")
    ref, g_ref = read_image(ref_path, "label")
    problem = g_ref.mismatch(g_pred, atol=1e-4)
    if problem is not None:
        raise MedsegInputError(pred_path, f"geometry does not match the reference {Path(ref_path).name}: {problem}")
    return pred, ref, g_ref


def match_cases(pred: str | Path, ref: str | Path) -> list[tuple[str, Path, Path]]:
    """``(case, pred file, ref file)`` for two files, or two folders matched by case name."""
    pred, ref = Path(pred), Path(ref)
    for p in (pred, ref):
        if not p.exists():
            raise MedsegInputError(p, "file or folder not found")
    if pred.is_file() and ref.is_file():
        return [(case_name(ref), pred, ref)]
    if pred.is_dir() and ref.is_dir():
        preds = {case_name(p): p for p in pred.iterdir() if is_image_file(p)}
        refs = {case_name(p): p for p in ref.iterdir() if is_image_file(p)}
        common = sorted(set(preds) & set(refs))
        if not common:
            raise MedsegInputError(pred, f"no case name in common with {ref}")
        missing = sorted(set(refs) - set(preds))
        if missing:
            raise MedsegInputError(pred, f"no prediction for {len(missing)} reference case(s): {', '.join(missing[:5])}")
        return [(c, preds[c], refs[c]) for c in common]
    raise MedsegInputError(pred, "prediction and reference must both be files or both be folders")


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation per label over cases (rows with ``case`` = ``mean`` / ``std``)."""
    out = []
    for label in sorted({r["label"] for r in rows}):
        subset = [r for r in rows if r["label"] == label]
        for stat, fn in (("mean", np.mean), ("std", np.std)):
            out.append({"case": stat, "label": label, **{m: float(fn([r[m] for r in subset])) for m in METRICS}})
    return out
