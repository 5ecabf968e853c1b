from __future__ import annotations

import numpy as np
import torch
import pytest

from medseg.metrics import diagonal_mm, hd95, surface_dice


def _cube(shape, lo, hi):
    m = np.zeros(shape, bool)
    m[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return m


def test_hd95_shift_in_mm_uses_spacing() -> None:
    ref = _cube((20, 20, 20), (5, 5, 5), (12, 12, 12))
    pred = np.roll(ref, 2, axis=2)
    assert hd95(pred, ref, (1.0, 1.0, 1.0)) == pytest.approx(2.0)
    assert hd95(pred, ref, (1.0, 1.0, 3.0)) == pytest.approx(6.0)
    assert hd95(pred, ref, (1, 1.0, 3)) == pytest.approx(6.0)  # mixed int/float spacing (MONAI refuses it raw)
    assert surface_dice(pred, ref, (1, 1.0, 3), 6.0) == pytest.approx(1.0)


def test_empty_policy_never_nan() -> None:
    empty = np.zeros((10, 10, 10), bool)
    ref = _cube((10, 10, 10), (2, 2, 2), (5, 5, 5))
    spacing = (0.5, 1.0, 2.0)
    assert hd95(empty, empty, spacing) == 0.0
    assert hd95(empty, ref, spacing) == pytest.approx(diagonal_mm((10, 10, 10), spacing))
    assert hd95(ref, empty, spacing) == pytest.approx(np.sqrt(25 + 100 + 400))
    assert surface_dice(empty, empty, spacing, 1.0) == 1.0
    assert surface_dice(empty, ref, spacing, 1.0) == 0.0


def test_surface_dice_tolerance() -> None:
    ref = _cube((20, 20, 20), (5, 5, 5), (12, 12, 12))
    pred = np.roll(ref, 1, axis=0)
    assert surface_dice(pred, ref, (1, 1, 1), tolerance_mm=2.0) == pytest.approx(1.0)
    assert surface_dice(pred, ref, (1, 1, 1), tolerance_mm=0.5) < 1.0


def _plate() -> tuple[np.ndarray, np.ndarray]:
    """A one-voxel-thick plate and the same plate one slice further along a 3 mm axis."""
    ref = np.zeros((20, 20, 12), bool)
    ref[3:17, 3:17, 5] = True
    return np.roll(ref, 1, axis=2), ref


def _blobs() -> tuple[np.ndarray, np.ndarray]:
    """Two smooth, slightly offset ellipsoids."""
    i, j, k = np.ogrid[:32, :32, :32]
    ref = (i - 15.5) ** 2 + (j - 16) ** 2 + (k - 15) ** 2 < 10**2
    pred = (i - 17) ** 2 / 1.1 + (j - 15) ** 2 + (k - 16) ** 2 < 9.5**2
    return pred, ref


def _voxel_counting(pred: np.ndarray, ref: np.ndarray, spacing: tuple, tolerance: float) -> float:
    """MONAI's default surface Dice (boundary voxels counted, not weighed by area): what medseg must not report."""
    from monai.metrics import compute_surface_dice

    t = lambda m: torch.from_numpy(m)[None, None]  # noqa: E731
    return float(compute_surface_dice(t(pred), t(ref), class_thresholds=[tolerance], include_background=True, spacing=list(spacing)))


@pytest.mark.parametrize(
    ("shapes", "spacing", "tolerance"),
    [(_plate, (1.0, 1.0, 3.0), 1.0), (_blobs, (1.0, 1.0, 1.0), 1.0), (_blobs, (0.8, 1.0, 2.0), 1.5)],
    ids=["thin-plate-3mm", "blob-1mm", "blob-anisotropic"],
)
def test_surface_dice_is_deepminds_area_weighted_definition(shapes, spacing, tolerance) -> None:
    """Equal to DeepMind's surface-distance (the NSD reference), and far from the voxel-counting value."""
    import surface_distance

    pred, ref = shapes()
    reference = surface_distance.compute_surface_dice_at_tolerance(
        surface_distance.compute_surface_distances(ref, pred, spacing), tolerance
    )
    assert surface_dice(pred, ref, spacing, tolerance) == pytest.approx(reference, abs=1e-5)
    assert abs(_voxel_counting(pred, ref, spacing, tolerance) - reference) > 0.1  # the cases tell the two apart


def test_hd95_follows_the_documented_convention() -> None:
    """Boundary-voxel centres (erosion by the 6-connected cross), 95th percentile per direction, max of both."""
    from scipy.ndimage import binary_erosion

    pred, ref = _blobs()
    pred = pred[::2, ::2, ::2].copy()  # 16^3: small enough for all pairwise distances
    ref = ref[::2, ::2, ::2].copy()
    pred[0:3, 0:3, 0:3] = True  # a far-away speck: 95th percentiles 8.2 mm (pred -> ref) and 2.0 mm (ref -> pred)
    spacing = np.array([0.8, 1.0, 2.0])

    def boundary(m: np.ndarray) -> np.ndarray:
        return np.argwhere(m & ~binary_erosion(m)) * spacing

    bp, br = boundary(pred), boundary(ref)
    d = np.linalg.norm(bp[:, None] - br[None], axis=-1)
    to_ref, to_pred = d.min(axis=1), d.min(axis=0)
    expected = max(np.percentile(to_ref, 95), np.percentile(to_pred, 95))
    assert hd95(pred, ref, spacing) == pytest.approx(expected, rel=1e-5)
    # the speck separates this convention from the others in use: pooled percentile, plain maximum
    assert abs(expected - np.percentile(np.concatenate([to_ref, to_pred]), 95)) > 1.0
    assert abs(expected - max(to_ref.max(), to_pred.max())) > 1.0
