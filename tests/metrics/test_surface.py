from __future__ import annotations

import numpy as np
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
