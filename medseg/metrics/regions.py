"""Scoring by region (unions of labels) and global Dice pooled over cases, for ``medseg evaluate``.

LiTS scores the *liver* as liver + tumour (labels 1 and 2) and the *tumour* as label 2, each as Dice per
case (mean over cases) and global Dice (true/false positives and negatives of all cases pooled before
dividing, so large cases weigh more): ``--regions lits``. Any other grouping is written
``name=1+2,name2=2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medseg.errors import MedsegInputError
from medseg.metrics.dice import dice_from_counts, iou_from_counts, label_counts
from medseg.metrics.scores import evaluate_arrays

Regions = dict[str, tuple[int, ...]]

#: named region sets (``--regions lits``)
REGION_PRESETS: dict[str, Regions] = {"lits": {"liver": (1, 2), "tumour": (2,)}}


def parse_regions(text: str) -> Regions:
    """A preset name (``lits``) or ``name=1+2,name2=2`` -> ``{name: label values}``.

    Example:
        >>> parse_regions("liver=1+2,tumour=2")
        {'liver': (1, 2), 'tumour': (2,)}
    """
    if text in REGION_PRESETS:
        return dict(REGION_PRESETS[text])
    regions: Regions = {}
    try:
        for part in filter(None, text.replace(" ", "").split(",")):
            name, values = part.split("=")
            regions[name] = tuple(int(v) for v in values.split("+"))
            if not name or not regions[name]:
                raise ValueError
    except ValueError:
        presets = ", ".join(REGION_PRESETS)
        raise MedsegInputError(None, f"--regions: expected a preset ({presets}) or name=1+2,name2=2, got '{text}'") from None
    if not regions:
        raise MedsegInputError(None, "--regions: no region given")
    return regions


class PooledCounts:
    """Sums tp/fp/fn per label or region over cases; :meth:`rows` gives the global Dice and IoU."""

    def __init__(self) -> None:
        self.counts: dict[Any, np.ndarray] = {}

    def add(self, key: Any, counts: np.ndarray) -> None:
        self.counts[key] = self.counts.get(key, np.zeros(3, dtype=np.int64)) + np.asarray(counts, dtype=np.int64)

    def rows(self) -> list[dict[str, Any]]:
        """One row per key: ``case = "global"``, pooled ``dice`` and ``iou``, pooled ``tp``/``fp``/``fn``."""
        out = []
        for key, c in self.counts.items():
            out.append({"case": "global", "label": key, "dice": float(dice_from_counts(c)), "iou": float(iou_from_counts(c))})
        return out


def evaluate_case(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    labels: Sequence[int] | None = None,
    regions: Regions | None = None,
    tolerance_mm: float = 1.0,
    case: str = "case",
    pooled: PooledCounts | None = None,
) -> list[dict[str, Any]]:
    """:func:`~medseg.metrics.scores.evaluate_arrays` rows per label, or per region (``label`` = region
    name) when ``regions`` is given; adds the case's counts to ``pooled``."""
    if regions is None:
        rows = evaluate_arrays(pred, ref, spacing, labels, tolerance_mm, case)
        values = [r["label"] for r in rows]
        if pooled is not None and values:
            for value, c in zip(values, label_counts(pred, ref, values).numpy()):
                pooled.add(value, c)
        return rows
    rows = []
    for name, members in regions.items():
        p, r = np.isin(pred, members).astype(np.uint8), np.isin(ref, members).astype(np.uint8)
        row = evaluate_arrays(p, r, spacing, [1], tolerance_mm, case)[0]
        rows.append({**row, "label": name})
        if pooled is not None:
            pooled.add(name, label_counts(p, r, [1]).numpy()[0])
    return rows
