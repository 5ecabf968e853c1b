"""Surface metrics (HD95, surface Dice) through MONAI, with medseg's empty-mask policy.

Definitions (stated in the README's evaluation section too):

- **HD95** (:func:`hd95`, MONAI's ``compute_hausdorff_distance``): the boundary voxels of each mask (mask
  voxels that a binary erosion with the 6-connected cross removes, i.e. voxels with a background face
  neighbour), distances in mm between boundary-voxel *centres* (Euclidean distance transform with the voxel
  spacing), the 95th percentile (linear interpolation) of the prediction-to-reference distances and of the
  reference-to-prediction distances separately, and the maximum of the two. Every boundary voxel weighs the
  same. This agrees with DeepMind's area-weighted robust Hausdorff within about one voxel diagonal.
- **Surface Dice** (:func:`surface_dice`, normalised surface Dice, NSD) at a tolerance ``tau`` mm: DeepMind's
  ``surface-distance`` definition (Nikolov et al. 2021; the Medical Segmentation Decathlon's NSD): each mask's
  surface is cut into surface elements on the voxel-corner grid (marching-cubes cases of each 2x2x2
  neighbourhood), each weighed by its area in mm^2; NSD = (area of the prediction's surface within ``tau`` of
  the reference surface + area of the reference's surface within ``tau`` of the prediction's) / (total area of
  both surfaces). MONAI computes it with ``use_subvoxels=True`` (equal to ``surface-distance`` up to float32
  rounding; a test compares them). MONAI's default instead *counts boundary voxels*, which underweights thin and
  anisotropic structures (a one-voxel plate shifted by one 3 mm slice: 0.0 instead of 0.5 at 1 mm).

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
    """95th-percentile symmetric Hausdorff distance in mm between two binary masks ``(*spatial)``.

    Boundary-voxel centres, 95th percentile per direction, the maximum of both (see the module docstring).
    """
    p, r = _mask(pred), _mask(ref)
    p_any, r_any = bool(p.any()), bool(r.any())
    if not p_any and not r_any:
        return 0.0
    if p_any != r_any:
        return diagonal_mm(p.shape[2:], spacing)
    with _quiet():
        value = compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=[float(s) for s in spacing])
    return float(value.reshape(-1)[0])


def surface_dice(
    pred: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray, spacing: Sequence[float], tolerance_mm: float
) -> float:
    """Area-weighted normalised surface Dice at ``tolerance_mm`` of two binary masks ``(*spatial)``.

    DeepMind's ``surface-distance`` definition (surface elements weighed by area; see the module docstring).
    """
    p, r = _mask(pred), _mask(ref)
    p_any, r_any = bool(p.any()), bool(r.any())
    if not p_any and not r_any:
        return 1.0
    if p_any != r_any:
        return 0.0
    with _quiet():
        value = compute_surface_dice(
            p, r, class_thresholds=[tolerance_mm], include_background=True, spacing=[float(s) for s in spacing], use_subvoxels=True
        )
    return float(value.reshape(-1)[0])
