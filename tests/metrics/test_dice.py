from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric
from monai.networks.utils import one_hot

from medseg.metrics import DiceAccumulator, dice, dice_from_counts, label_counts


@pytest.mark.parametrize("num_classes", [2, 4, 9])
def test_dice_equals_monai_dicemetric(num_classes: int) -> None:
    gen = torch.Generator().manual_seed(num_classes)
    ref = torch.randint(0, num_classes, (3, 17, 13, 11), generator=gen)
    pred = torch.where(torch.rand(ref.shape, generator=gen) < 0.7, ref, torch.randint(0, num_classes, ref.shape, generator=gen))
    pred[1][pred[1] == num_classes - 1] = 0  # a class missing from one prediction
    ref[2][ref[2] == 1] = 0  # and from one reference
    metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    expected = metric(one_hot(pred[:, None], num_classes), one_hot(ref[:, None], num_classes)).numpy()
    labels = list(range(num_classes))
    ours = np.stack([dice_from_counts(label_counts(pred[b], ref[b], labels)) for b in range(3)])
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_empty_policy() -> None:
    empty = np.zeros((4, 4, 4), np.uint8)
    full = np.ones((4, 4, 4), np.uint8)
    assert dice(empty, empty, [1]) == {1: 1.0}
    assert dice(empty, full, [1]) == {1: 0.0}
    assert dice(full, empty, [1]) == {1: 0.0}


def test_arbitrary_label_values_and_others() -> None:
    ref = np.array([0, 4, 4, 2, 7, 7])
    pred = np.array([0, 4, 2, 2, 7, 0])
    counts = label_counts(pred, ref, [2, 4]).numpy()
    np.testing.assert_array_equal(counts, [[1, 1, 0], [1, 0, 1]])  # 7 counts as "neither 2 nor 4"


def test_accumulator_global_vs_per_case() -> None:
    acc = DiceAccumulator([1])
    acc.update(np.array([1, 1, 0, 0]), np.array([1, 1, 0, 0]))  # dice 1, 2 voxels
    acc.update(np.array([1, 0] + [0] * 98), np.array([0, 1] + [1] * 98))  # dice 0, big miss
    assert acc.per_case_mean()[1] == pytest.approx(0.5)
    # pooled: tp 2, fp 1, fn 99 -> 4 / (4 + 100)
    assert acc.global_dice()[1] == pytest.approx(4 / 104)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shape"):
        label_counts(np.zeros((2, 2)), np.zeros((2, 3)), [1])
