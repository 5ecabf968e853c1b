"""Metrics as pure functions plus thin accumulators."""

from __future__ import annotations

from medseg.metrics.dice import DiceAccumulator, dice, dice_from_counts, iou_from_counts, label_counts
from medseg.metrics.surface import diagonal_mm, hd95, surface_dice

__all__ = [
    "DiceAccumulator",
    "diagonal_mm",
    "dice",
    "dice_from_counts",
    "hd95",
    "iou_from_counts",
    "label_counts",
    "surface_dice",
]
