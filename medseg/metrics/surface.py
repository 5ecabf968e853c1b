"""Surface metrics (HD95, surface Dice) through MONAI, with medseg's empty-mask policy.

Policy (never NaN, never dropped): both masks empty -> HD95 0 mm, surface Dice 1; exactly one empty ->
HD95 = the image diagonal in mm (worst case), surface Dice 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from monai.metrics import compute_hausdorff_distance, compute_surface_dice


@contextmanager
def _quiet() -> Iterator[None]:
    """MONAI 1.5 warns about its own internal ``always_return_as_numpy`` argument on every call; hide only that."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
        yield


def _mask(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    return t.bool()[None, None]  # (B=1, C=1, *spatial)


def diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Length of the image diagonal in mm."""
    return float(np.linalg.norm(np.asarray(shape, dtype=np.float64) * np.asarray(spacing, dtype=np.float64)))


def hd95(pred: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray, spacing: Sequence[float]) -> float:
    """95th-percentile symmetric Hausdorff distance in mm between two binary masks."""
    p, r = _mask(pred), _mask(ref)
    p_any, r_any = bool(p.any()), bool(r.any())
    if not p_any and not r_any:
        return 0.0
    if p_any != r_any:
        return diagonal_mm(p.shape[2:], spacing)
    with _quiet():
        value = compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=list(spacing))
    return float(value.reshape(-1)[0])


def surface_dice(
    pred: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray, spacing: Sequence[float], tolerance_mm: float
) -> float:
    """Normalised surface Dice at ``tolerance_mm`` between two binary masks."""
    p, r = _mask(pred), _mask(ref)
    p_any, r_any = bool(p.any()), bool(r.any())
    if not p_any and not r_any:
        return 1.0
    if p_any != r_any:
        return 0.0
    with _quiet():
        value = compute_surface_dice(p, r, class_thresholds=[tolerance_mm], include_background=True, spacing=list(spacing))
    return float(value.reshape(-1)[0])
