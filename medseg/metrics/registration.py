"""Registration metrics: Jacobian determinant, folding, inverse consistency, Dice of warped labels.

Fields follow :mod:`medseg.networks.blocks.registration`: ``(B, dims, *spatial)`` pull-back displacements,
channel ``i`` along array axis ``i``. All functions are pure and batch-first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from medseg.metrics.dice import dice_from_counts, label_counts
from medseg.networks.blocks.registration import compose_flows, warp_labels


def _spacing(spacing: Sequence[float] | None, dims: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * dims
    values = tuple(float(s) for s in spacing)
    if len(values) != dims or min(values) <= 0:
        raise ValueError(f"spacing must be {dims} positive numbers, got {spacing}")
    return values


def _check_flow(flow: torch.Tensor) -> int:
    dims = flow.ndim - 2
    if dims not in (2, 3) or flow.shape[1] != dims:
        raise ValueError(f"expected a (B, dims, *spatial) field with dims 2 or 3, got {tuple(flow.shape)}")
    return dims


def jacobian_determinant(flow: torch.Tensor, spacing: Sequence[float] | None = None) -> torch.Tensor:
    """Determinant of the Jacobian of ``T(x) = x + flow(x)`` at every voxel.

    Derivatives are central differences inside the grid and one-sided at its faces (``torch.gradient``),
    so the determinant of an affine field is exact everywhere.

    Args:
        flow: ``(B, dims, *spatial)`` displacement; in voxels when ``spacing`` is None, else in mm along
            the array axes of a grid with voxel size ``spacing`` (mm). The determinant is the same for a
            field in voxels and the same field converted to mm.
        spacing: voxel size per array axis.

    Returns:
        ``(B, *spatial)`` determinants (1: volume kept, <= 0: folding).

    Example:
        >>> jacobian_determinant(torch.zeros(1, 3, 4, 4, 4)).unique()
        tensor([1.])
    """
    dims = _check_flow(flow)
    sp = _spacing(spacing, dims)
    flow = flow.float()
    # grads[j][:, i] = d flow_i / d x_j
    grads = torch.gradient(flow, spacing=sp, dim=tuple(range(2, 2 + dims)))
    jac = torch.stack(grads, dim=2)  # (B, i, j, *spatial)
    jac = jac + torch.eye(dims, device=flow.device).view(1, dims, dims, *([1] * dims))
    return torch.linalg.det(jac.movedim((1, 2), (-2, -1)))


def folding_fraction(
    flow: torch.Tensor, spacing: Sequence[float] | None = None, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Fraction of voxels (within ``mask`` if given) where the Jacobian determinant is <= 0.

    Args:
        flow: ``(B, dims, *spatial)`` displacement (see :func:`jacobian_determinant`).
        spacing: voxel size when ``flow`` is in mm.
        mask: optional ``(B, *spatial)`` or ``(B, 1, *spatial)`` region (e.g. the brain).

    Returns:
        ``(B,)`` fractions in [0, 1].
    """
    folded = (jacobian_determinant(flow, spacing) <= 0).float()
    if mask is None:
        return folded.flatten(1).mean(1)
    m = mask.reshape(folded.shape).float()
    return (folded * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)


def inverse_consistency_map(
    flow: torch.Tensor, flow_reverse: torch.Tensor, spacing: Sequence[float] | None = None
) -> torch.Tensor:
    """Length (mm, or voxels without ``spacing``) of ``T'(T(x)) - x`` at every voxel of the fixed grid.

    ``flow`` maps the fixed grid into the moving image, ``flow_reverse`` the moving grid into the fixed
    one; both in voxels of the same grid. ``spacing`` scales the residual's components to mm, which
    gives its true length for any grid whose axes are perpendicular (rotations keep lengths).

    Returns:
        ``(B, *spatial)`` residual lengths.
    """
    dims = _check_flow(flow)
    if flow.shape != flow_reverse.shape:
        raise ValueError(f"fields differ in shape: {tuple(flow.shape)} vs {tuple(flow_reverse.shape)}")
    sp = torch.tensor(_spacing(spacing, dims), device=flow.device).view(1, dims, *([1] * dims))
    residual = compose_flows(flow_reverse.float(), flow.float())  # T' o T - id, on the fixed grid
    return (residual * sp).norm(dim=1)


def inverse_consistency_error(
    flow: torch.Tensor, flow_reverse: torch.Tensor, spacing: Sequence[float] | None = None
) -> torch.Tensor:
    """Mean inverse-consistency error per case, averaged over both compositions (``T' o T``, ``T o T'``).

    Returns:
        ``(B,)`` mean residual length in mm (voxels without ``spacing``).
    """
    there = inverse_consistency_map(flow, flow_reverse, spacing).flatten(1).mean(1)
    back = inverse_consistency_map(flow_reverse, flow, spacing).flatten(1).mean(1)
    return 0.5 * (there + back)


def warped_label_dice(
    moving_labels: torch.Tensor, fixed_labels: torch.Tensor, flow: torch.Tensor, labels: Sequence[int]
) -> torch.Tensor:
    """Dice between ``fixed_labels`` and ``moving_labels`` warped by ``flow`` (nearest neighbour).

    Args:
        moving_labels / fixed_labels: ``(B, 1, *spatial)`` integer label maps on the flow's grid.
        flow: ``(B, dims, *spatial)`` displacement in voxels (moving -> fixed, pull-back).
        labels: label values to score (e.g. ``[1, 2, 3]``).

    Returns:
        ``(B, len(labels))`` Dice scores (:func:`medseg.metrics.dice.dice`: a label absent from both scores 1).
    """
    warped = warp_labels(moving_labels, flow)
    if warped.shape != fixed_labels.shape:
        raise ValueError(f"label maps differ in shape: {tuple(warped.shape)} vs {tuple(fixed_labels.shape)}")
    scores = [dice_from_counts(label_counts(w, f, labels)) for w, f in zip(warped, fixed_labels, strict=True)]
    return torch.as_tensor(np.stack(scores), dtype=torch.float32)
