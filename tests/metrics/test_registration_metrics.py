"""Jacobian determinant, folding fraction, inverse-consistency error (mm), Dice after warping labels."""

from __future__ import annotations

import pytest
import torch

from medseg.metrics.dice import dice
from medseg.metrics.registration import (
    folding_fraction,
    inverse_consistency_error,
    inverse_consistency_map,
    jacobian_determinant,
    warped_label_dice,
)
from medseg.networks.blocks.registration import identity_grid


def _affine_field(matrix: torch.Tensor, offset: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Displacement of x -> A x + b on a grid: (A - I) x + b."""
    dims = len(shape)
    grid = identity_grid(shape)
    field = torch.einsum("ij,j...->i...", matrix - torch.eye(dims), grid) + offset.view(dims, *([1] * dims))
    return field[None]


@pytest.mark.parametrize(
    "matrix",
    [
        torch.tensor([[1.1, 0.2, 0.0], [0.0, 0.9, 0.1], [0.05, 0.0, 1.2]]),
        torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),  # a reflection: det -1
        torch.tensor([[1.3, -0.4], [0.2, 0.8]]),
    ],
)
def test_jacobian_of_an_affine_field_is_its_determinant_everywhere(matrix: torch.Tensor) -> None:
    shape = (7, 8, 9)[: matrix.shape[0]]
    field = _affine_field(matrix, torch.arange(1.0, matrix.shape[0] + 1), shape)
    det = jacobian_determinant(field)
    assert det.shape == (1, *shape)
    torch.testing.assert_close(det, torch.full_like(det, torch.linalg.det(matrix).item()), atol=1e-5, rtol=1e-5)


def test_jacobian_is_the_same_for_a_field_in_voxels_and_in_mm() -> None:
    spacing = (2.0, 0.5, 3.0)
    torch.manual_seed(0)
    field = 0.3 * torch.nn.functional.avg_pool3d(torch.randn(1, 3, 10, 10, 10), 3, 1, 1)
    in_mm = field * torch.tensor(spacing).view(1, 3, 1, 1, 1)
    torch.testing.assert_close(jacobian_determinant(in_mm, spacing), jacobian_determinant(field), atol=1e-5, rtol=1e-5)
    # treating the mm field as voxels would be wrong (and differs)
    assert not torch.allclose(jacobian_determinant(in_mm), jacobian_determinant(field), atol=1e-3)


def test_folding_fraction_counts_non_positive_determinants() -> None:
    shape = (6, 6, 6)
    identity = torch.zeros(1, 3, *shape)
    folded = _affine_field(torch.diag(torch.tensor([-1.0, 1.0, 1.0])), torch.zeros(3), shape)
    assert folding_fraction(identity).tolist() == [0.0]
    assert folding_fraction(folded).tolist() == [1.0]
    half = torch.cat([identity[..., :3], folded[..., 3:]], dim=-1)  # first three slices unfolded
    mask = torch.zeros(1, *shape)
    mask[..., :2] = 1
    assert folding_fraction(half, mask=mask).item() == 0.0
    assert 0.0 < folding_fraction(half).item() < 1.0


def test_inverse_consistency_error_is_zero_for_inverses_and_measured_in_mm() -> None:
    shape = (8, 8, 8)
    t = torch.tensor([1.0, -2.0, 0.5]).view(1, 3, 1, 1, 1).expand(1, 3, *shape)
    assert inverse_consistency_error(t, -t).item() == pytest.approx(0.0, abs=1e-6)
    # a reverse field off by one voxel along axis 1: error 1 voxel, i.e. the axis-1 spacing in mm
    off = -t + torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1, 1)
    assert inverse_consistency_error(t, off).item() == pytest.approx(1.0, abs=1e-5)
    assert inverse_consistency_error(t, off, spacing=(1.0, 2.5, 4.0)).item() == pytest.approx(2.5, abs=1e-5)
    assert inverse_consistency_map(t, off, spacing=(1.0, 2.5, 4.0)).shape == (1, *shape)


def test_warped_label_dice_is_the_toolkit_dice_per_case() -> None:
    a = torch.tensor([0, 1, 1, 2, 2, 2]).view(1, 1, 1, 1, 6)
    b = torch.tensor([0, 1, 2, 2, 2, 0]).view(1, 1, 1, 1, 6)
    moving, fixed = torch.cat([a, b]), torch.cat([b, b])  # case 0: a vs b, case 1: identical
    scores = warped_label_dice(moving, fixed, torch.zeros(2, 3, 1, 1, 6), [1, 2, 3])
    torch.testing.assert_close(scores[0], torch.tensor([2 * 1 / 3, 2 * 2 / 6, 1.0]))  # label 3 absent: 1
    assert list(scores[0].numpy()) == pytest.approx(list(dice(a, b, [1, 2, 3]).values()))
    torch.testing.assert_close(scores[1], torch.ones(3))


def test_warping_labels_back_by_their_shift_restores_the_dice() -> None:
    torch.manual_seed(0)
    fixed = torch.zeros(1, 1, 12, 12, 12, dtype=torch.long)
    fixed[..., 3:8, 4:9, 2:7] = 1
    fixed[..., 5:7, 5:7, 3:5] = 2
    moving = torch.roll(fixed, shifts=(2, -1), dims=(2, 3))  # the same anatomy, moved
    shift = torch.tensor([2.0, -1.0, 0.0]).view(1, 3, 1, 1, 1).expand(1, 3, 12, 12, 12)
    assert warped_label_dice(moving, fixed, torch.zeros_like(shift), [1, 2]).max() < 0.8
    torch.testing.assert_close(warped_label_dice(moving, fixed, shift, [1, 2]), torch.ones(1, 2))
