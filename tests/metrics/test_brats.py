"""BraTS region metrics on hand-made volumes with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medseg.data.brats_labels import labels_to_regions
from medseg.metrics import brats


def _cube(shape: tuple[int, ...], lo: int, hi: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(lo, hi) for _ in shape)] = True
    return mask


def test_region_masks_from_labels() -> None:
    labels = np.zeros((8, 8, 8), dtype=np.int64)
    labels[1:7, 1:7, 1:7] = 2
    labels[2:6, 2:6, 2:6] = 1
    labels[3:5, 3:5, 3:5] = 4
    masks = brats.region_masks(labels)
    assert [int(masks[r].sum()) for r in ("WT", "TC", "ET")] == [216, 64, 8]
    assert brats.nesting_violations([masks["WT"], masks["TC"], masks["ET"]]).voxels == 0


def test_label_maps_never_violate_nesting() -> None:
    labels = np.random.default_rng(0).choice([0, 1, 2, 4], size=(6, 6, 6))
    assert brats.nesting_violations(labels_to_regions(labels)) == brats.NestingViolations((0, 0), 0, 0.0)


def test_nesting_violations_counts() -> None:
    wt = _cube((6, 6, 6), 1, 4)  # 27 voxels
    tc = _cube((6, 6, 6), 2, 5)  # 27 voxels, 8 inside wt -> 19 outside
    et = _cube((6, 6, 6), 4, 6)  # 8 voxels, 1 inside tc (4,4,4) -> 7 outside tc
    result = brats.nesting_violations(np.stack([wt, tc, et]))
    assert result.per_pair == (19, 7)
    union = wt | tc | et
    violating = (tc & ~wt) | (et & ~tc)
    assert result.voxels == int(violating.sum())
    assert result.fraction == pytest.approx(violating.sum() / union.sum())
    assert brats.nesting_violations(torch.from_numpy(np.stack([wt, tc, et]))) == result


def test_violations_from_probabilities_and_thresholds() -> None:
    # cumulative (nested) probabilities: one threshold never violates, a child threshold below its parent's can
    p = np.array([[0.6, 0.9, 0.2], [0.55, 0.3, 0.1], [0.1, 0.2, 0.05]])  # (WT, TC, ET) x 3 voxels
    assert brats.nesting_violations_from_probabilities(p, 0.5).voxels == 0
    tuned = brats.nesting_violations_from_probabilities(p, (0.7, 0.5, 0.5))
    assert tuned.per_pair == (1, 0) and tuned.voxels == 1


def test_softmax_region_probabilities_are_cumulative_and_nested() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 5, 5))
    q = np.exp(logits) / np.exp(logits).sum(0)
    regions = brats.softmax_region_probabilities(q)
    assert regions.shape == (3, 5, 5)
    np.testing.assert_allclose(regions[0], 1 - q[0])
    np.testing.assert_allclose(regions[1], q[2] + q[3])
    np.testing.assert_allclose(regions[2], q[3])
    for t in (0.1, 0.3, 0.5, 0.9):
        assert brats.nesting_violations_from_probabilities(regions, t).voxels == 0
    # argmax decoding nests as well
    levels = q.argmax(0)
    assert brats.nesting_violations(np.stack([levels >= k for k in (1, 2, 3)])).voxels == 0


def test_dice_policy() -> None:
    a, b = _cube((8, 8, 8), 0, 4), _cube((8, 8, 8), 2, 6)
    assert brats.dice_binary(a, b) == pytest.approx(2 * 8 / 128)
    assert brats.dice_binary(np.zeros(4, bool), np.zeros(4, bool)) == 1.0
    assert brats.dice_binary(a, np.zeros_like(a)) == 0.0


def test_hd95_known_shift_and_policy() -> None:
    a = _cube((10, 10, 10), 2, 6)
    b = np.roll(a, 2, axis=0)  # shifted 2 voxels along the first axis
    assert brats.hd95_binary(a, b) == pytest.approx(2.0)
    assert brats.hd95_binary(a, b, spacing=(3.0, 1.0, 1.0)) == pytest.approx(6.0)
    assert brats.hd95_binary(a, a) == 0.0
    empty = np.zeros_like(a)
    assert brats.hd95_binary(empty, empty) == 0.0
    assert brats.hd95_binary(a, empty, spacing=(1.0, 2.0, 2.0)) == pytest.approx(math.sqrt(100 + 400 + 400))


def test_region_scores_and_swappable_metrics() -> None:
    ref = np.zeros((8, 8, 8), dtype=np.int64)
    ref[1:7, 1:7, 1:7], ref[2:6, 2:6, 2:6], ref[3:5, 3:5, 3:5] = 2, 1, 4
    pred = ref.copy()
    pred[pred == 4] = 1  # enhancing tumour missed
    scores = brats.region_scores(labels_to_regions(pred), labels_to_regions(ref))
    assert scores["WT"] == {"dice": 1.0, "hd95": 0.0}
    assert scores["TC"] == {"dice": 1.0, "hd95": 0.0}
    assert scores["ET"]["dice"] == 0.0 and scores["ET"]["hd95"] == pytest.approx(math.sqrt(3 * 64))
    custom = brats.region_scores(
        labels_to_regions(pred), labels_to_regions(ref), dice_fn=lambda p, r: -1.0, hd95_fn=lambda p, r, s: -2.0
    )
    assert custom["ET"] == {"dice": -1.0, "hd95": -2.0}
    with pytest.raises(ValueError):
        brats.region_scores(labels_to_regions(pred)[:2], labels_to_regions(ref)[:2])
