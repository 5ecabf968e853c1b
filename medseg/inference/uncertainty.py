"""Voxel-wise uncertainty from the predicted probabilities (``medseg predict --uncertainty``).

The map is the entropy of the probabilities the label map was taken from: in the input geometry, after
the geometry restore, and averaged over the mirrored passes when test-time augmentation is on (then it is
the predictive entropy of the TTA ensemble, which also rises where the mirrored passes disagree). It is
normalised to [0, 1]: 0 = one class has all the probability, 1 = all classes equally likely.

- softmax heads (output kind ``labels``): categorical entropy ``-sum_c p_c log p_c / log C``;
- other heads (independent sigmoid channels, e.g. nested regions): mean binary entropy of the channels
  ``-(p log p + (1-p) log(1-p)) / log 2``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import xlogy


def entropy_map(probabilities: np.ndarray, categorical: bool = True, chunk: int = 16) -> np.ndarray:
    """Normalised entropy ``(I, J, K)`` float32 of ``(I, J, K, P)`` probabilities (computed in ``chunk``-slice blocks).

    Example:
        >>> entropy_map(np.full((1, 1, 1, 2), 0.5, np.float32))[0, 0, 0]
        1.0
    """
    if probabilities.ndim != 4:
        raise ValueError(f"expected (I, J, K, P) probabilities, got shape {probabilities.shape}")
    channels = probabilities.shape[-1]
    out = np.empty(probabilities.shape[:3], dtype=np.float32)
    for start in range(0, probabilities.shape[2], chunk):
        p = np.clip(probabilities[:, :, start : start + chunk].astype(np.float64), 0.0, 1.0)
        if categorical:
            h = -xlogy(p, p).sum(axis=-1) / np.log(max(channels, 2))
        else:
            h = -(xlogy(p, p) + xlogy(1.0 - p, 1.0 - p)).mean(axis=-1) / np.log(2.0)
        out[:, :, start : start + chunk] = np.clip(h, 0.0, 1.0)
    return out


def label_entropy(entropy: np.ndarray, labels: np.ndarray, names: Mapping[int, str]) -> dict[str, Any]:
    """Mean entropy over the whole image and over the voxels predicted as each label of ``names``.

    A label with no voxels gets ``None`` (nothing to average).
    """
    values = labels.ravel().astype(np.int64)
    flat = entropy.ravel().astype(np.float64)
    sums = np.bincount(values, weights=flat, minlength=max(names) + 1)
    counts = np.bincount(values, minlength=max(names) + 1)
    per_label = {
        str(value): {"name": name, "voxels": int(counts[value]), "mean_entropy": round(float(sums[value] / counts[value]), 6) if counts[value] else None}
        for value, name in sorted(names.items())
    }
    return {"mean_entropy": round(float(flat.mean()), 6), "labels": per_label}


__all__ = ["entropy_map", "label_entropy"]
