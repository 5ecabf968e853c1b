"""The label_counts fast path (labels 0..n-1, uint8/int32 arithmetic) equals the general lookup-table path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.metrics.dice import label_counts


@pytest.mark.parametrize("n,dtype", [(2, torch.uint8), (14, torch.uint8), (17, torch.uint8), (105, torch.int64), (3, torch.int32)])
def test_fast_path_equals_general_path(n: int, dtype: torch.dtype) -> None:
    rng = np.random.default_rng(n)
    ref = torch.from_numpy(rng.integers(0, n, (20, 18, 9))).to(dtype)
    pred = torch.where(torch.from_numpy(rng.random((20, 18, 9)) < 0.7), ref, torch.from_numpy(rng.integers(0, n, (20, 18, 9))).to(dtype))
    general = label_counts(pred, ref, list(range(n))[::-1]).flip(0)  # reversed labels take the lookup-table path
    assert torch.equal(label_counts(pred, ref, list(range(n))), general)
    other = pred.clone()
    other[0, 0, 0] = n  # a value outside the labels: the general path handles it
    assert torch.equal(label_counts(other, ref, list(range(n))), label_counts(other, ref, list(range(n))[::-1]).flip(0))
