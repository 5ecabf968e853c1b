"""The scores of one prediction/reference pair, per label: the row every evaluation path writes.

Columns (:data:`METRICS`): Dice, IoU, HD95 in mm, area-weighted surface Dice at a tolerance in mm
(definitions: :mod:`medseg.metrics.surface`), volumes in ml. Empty-mask policy (never NaN, never dropped):
a label absent from both maps scores Dice 1, IoU 1, HD95 0, surface Dice 1 (a correct "nothing there");
absent from exactly one, Dice 0, IoU 0, HD95 = the image diagonal in mm, surface Dice 0.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from medseg.metrics.dice import dice_from_counts, iou_from_counts, label_counts
from medseg.metrics.surface import hd95, surface_dice

#: metric columns of a row; ``surface_dice_area`` is the area-weighted (DeepMind / NSD) surface Dice
METRICS = ("dice", "iou", "hd95_mm", "surface_dice_area", "volume_pred_ml", "volume_ref_ml", "volume_diff_ml")


def evaluate_arrays(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    labels: Sequence[int] | None = None,
    tolerance_mm: float = 1.0,
    case: str = "case",
) -> list[dict[str, Any]]:
    """One row per label of two label maps ``(*spatial)``: Dice, IoU, HD95 (mm), surface Dice, volumes (ml).

    ``labels`` defaults to every non-zero value present in either map.
    """
    if labels is None:
        labels = present_labels(pred, ref)
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
                "surface_dice_area": surface_dice(p, r, spacing, tolerance_mm),
                "volume_pred_ml": vol_p,
                "volume_ref_ml": vol_r,
                "volume_diff_ml": vol_p - vol_r,
            }
        )
    return rows


def present_labels(*maps: np.ndarray) -> list[int]:
    """Sorted non-zero values present in any of the label maps."""
    values: set[int] = set()
    for m in maps:
        values |= set(np.unique(m).tolist())
    return sorted(values - {0})


def both_empty_row(case: str, label: Hashable) -> dict[str, Any]:
    """The row of a label absent from both maps of a case, by the empty-mask policy (computed, not restated)."""
    empty = np.zeros((1, 1, 1), np.uint8)
    return {**evaluate_arrays(empty, empty, (1.0, 1.0, 1.0), [1], case=case)[0], "label": label}
