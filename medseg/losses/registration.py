"""Registration losses: image similarity, displacement smoothness, inverse consistency, and MICDIR's sum.

Sign convention: every term here is a *loss* (lower is better) and weights are positive. MICDIR's code
multiplies the (positive) NCC by -1.2 and -0.5; ``similarity_weight=1.2`` on the negated NCC below is
the same number.

Reused from MONAI: local windowed NCC (``LocalNormalizedCrossCorrelationLoss``), global mutual
information (``GlobalMutualInformationLoss``), ``DiffusionLoss`` and ``BendingEnergyLoss``. Ours where
MONAI differs from the code: the *global* NCC (Pearson per volume) and the forward-difference gradient
penalty (MONAI's ``DiffusionLoss`` uses central differences, which do not see a checkerboard field, and
sums rather than averages over axes).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from monai.losses import (
    BendingEnergyLoss,
    DiffusionLoss,
    GlobalMutualInformationLoss,
    LocalNormalizedCrossCorrelationLoss,
)
from torch import nn

from medseg.losses.registry import register_loss
from medseg.networks.blocks.registration import compose_flows, linear_mode

SIMILARITIES = ("ncc", "lncc", "mse", "mi")
SMOOTHNESS = ("grad_l2", "grad_l1", "diffusion", "bending")


class GlobalNCCLoss(nn.Module):
    """Negative global normalised cross-correlation: ``-mean_b Pearson(pred_b, target_b)``.

    Pearson's r over all channels and voxels of each volume, as MICDIR's ``NormalizedCrossCorrelation``:
    ``(sum(dx dy) + eps) / (sqrt(sum(dx^2) sum(dy^2)) + eps)``.

    Shapes:
        ``pred``, ``target``: ``(B, C, *spatial)`` -> scalar in ``[-1, 1]``.

    Example:
        >>> x = torch.rand(2, 1, 8, 8, 8)
        >>> round(GlobalNCCLoss()(x, 2 * x + 1).item(), 4)
        -1.0
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        x = pred.flatten(1).float()
        y = target.flatten(1).float()
        dx = x - x.mean(dim=1, keepdim=True)
        dy = y - y.mean(dim=1, keepdim=True)
        r = ((dx * dy).sum(1) + self.eps) / (torch.sqrt(dx.square().sum(1) * dy.square().sum(1)) + self.eps)
        return -r.mean()


class GradientSmoothnessLoss(nn.Module):
    """Mean squared (or absolute) forward differences of a field, averaged over axes (VoxelMorph ``Grad``).

    Args:
        penalty: ``"l2"`` (MICDIR and VoxelMorph) or ``"l1"``.

    Shapes:
        ``flow`` ``(B, dims, *spatial)`` -> scalar.

    Example:
        >>> GradientSmoothnessLoss()(torch.ones(1, 3, 8, 8, 8)).item()
        0.0
    """

    def __init__(self, penalty: str = "l2") -> None:
        super().__init__()
        if penalty not in ("l1", "l2"):
            raise ValueError(f"penalty must be 'l1' or 'l2', got {penalty!r}")
        self.penalty = penalty

    def forward(self, flow: torch.Tensor) -> torch.Tensor:
        dims = flow.ndim - 2
        total = flow.new_zeros(())
        for axis in range(2, flow.ndim):
            d = torch.diff(flow, dim=axis)
            total = total + (d.square() if self.penalty == "l2" else d.abs()).mean()
        return total / dims


class InverseConsistencyLoss(nn.Module):
    """``||T o T' - id||^2`` for a field and its reverse, both compositions averaged.

    ``flow`` maps the fixed grid into the moving image (``T(x) = x + flow(x)``), ``flow_reverse`` the
    moving grid into the fixed image. ``T o T'`` and ``T' o T`` should both be the identity; the loss is
    the squared residual length (voxels^2), averaged over voxels, batch and the two compositions. The
    paper names a cycle-consistency loss that its code lacks; this is that term, off by default.

    Shapes:
        ``flow``, ``flow_reverse``: ``(B, dims, *spatial)`` on one grid -> scalar.
    """

    def __init__(self, padding_mode: str = "border") -> None:
        super().__init__()
        self.padding_mode = padding_mode

    def forward(self, flow: torch.Tensor, flow_reverse: torch.Tensor) -> torch.Tensor:
        there_and_back = compose_flows(flow, flow_reverse, self.padding_mode)
        back_and_there = compose_flows(flow_reverse, flow, self.padding_mode)
        return 0.5 * (there_and_back.square().sum(1).mean() + back_and_there.square().sum(1).mean())


def make_similarity(name: str, spatial_dims: int = 3, lncc_kernel_size: int = 9, mi_num_bins: int = 23) -> nn.Module:
    """Similarity loss by name: ``ncc`` (global, MICDIR), ``lncc`` (windowed, VoxelMorph), ``mse``, ``mi``.

    ``mi`` (MONAI's Parzen-window global mutual information) suits intermodal pairs (e.g. T1 to T2).
    """
    if name == "ncc":
        return GlobalNCCLoss()
    if name == "lncc":
        return LocalNormalizedCrossCorrelationLoss(spatial_dims=spatial_dims, kernel_size=lncc_kernel_size)
    if name == "mse":
        return nn.MSELoss()
    if name == "mi":
        return GlobalMutualInformationLoss(num_bins=mi_num_bins)
    raise ValueError(f"similarity must be one of {', '.join(SIMILARITIES)}, got {name!r}")


def make_smoothness(name: str) -> nn.Module:
    """Smoothness loss by name: ``grad_l2`` (MICDIR), ``grad_l1``, ``diffusion``, ``bending`` (MONAI)."""
    if name in ("grad_l2", "grad_l1"):
        return GradientSmoothnessLoss(name[-2:])
    if name == "diffusion":
        return DiffusionLoss()
    if name == "bending":
        return BendingEnergyLoss()
    raise ValueError(f"smoothness must be one of {', '.join(SMOOTHNESS)}, got {name!r}")


@register_loss("registration")
class RegistrationLoss(nn.Module):
    """Weighted sum of registration terms over a network's output dict (both directions when present).

    Terms (each summed over the directions the prediction holds, as the code sums X->Y and Y->X):
    ``similarity`` (target vs ``moved``), ``smoothness`` (of ``flow``, or of ``velocity`` with
    ``regularize="velocity"``), ``graph`` (``graph_loss``), ``similarity_half`` / ``smoothness_half``
    (``moved_half`` vs the target resized to its grid; ``flow_half``), ``inverse_consistency``
    (``flow`` with ``flow_reverse``). A term with weight 0 is not computed; a term whose outputs are
    missing is skipped.

    Args:
        spatial_dims: 2 or 3.
        similarity: ``ncc`` | ``lncc`` | ``mse`` | ``mi`` (see :func:`make_similarity`).
        smoothness: ``grad_l2`` | ``grad_l1`` | ``diffusion`` | ``bending``.
        regularize: ``"flow"`` (integrated displacement, MICDIR's code) or ``"velocity"`` (VoxelMorph).
        *_weight: weight of each term.
        lncc_kernel_size: window of the local NCC (VoxelMorph: 9).
        mi_num_bins: histogram bins of the mutual information.

    Call:
        ``loss(prediction, fixed, moving=None)``: ``prediction`` is the network's dict; ``fixed`` and
        ``moving`` the ``(B, C, *spatial)`` inputs (``moving`` is needed for the reverse direction).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        similarity: str = "ncc",
        smoothness: str = "grad_l2",
        regularize: str = "flow",
        similarity_weight: float = 1.2,
        smoothness_weight: float = 1.0,
        graph_weight: float = 1.0,
        half_similarity_weight: float = 0.5,
        half_smoothness_weight: float = 0.5,
        inverse_consistency_weight: float = 0.0,
        lncc_kernel_size: int = 9,
        mi_num_bins: int = 23,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if regularize not in ("flow", "velocity"):
            raise ValueError(f"regularize must be 'flow' or 'velocity', got {regularize!r}")
        self.weights = {
            "similarity": float(similarity_weight),
            "smoothness": float(smoothness_weight),
            "graph": float(graph_weight),
            "similarity_half": float(half_similarity_weight),
            "smoothness_half": float(half_smoothness_weight),
            "inverse_consistency": float(inverse_consistency_weight),
        }
        if any(w < 0 for w in self.weights.values()):
            raise ValueError(f"weights must be >= 0 (terms are losses), got {self.weights}")
        self.spatial_dims = spatial_dims
        self.regularize = regularize
        self.similarity = make_similarity(similarity, spatial_dims, lncc_kernel_size, mi_num_bins)
        self.smoothness = make_smoothness(smoothness)
        self.inverse_consistency = InverseConsistencyLoss()

    def _directions(
        self, prediction: Mapping[str, torch.Tensor], fixed: torch.Tensor, moving: torch.Tensor | None
    ) -> list[tuple[str, torch.Tensor]]:
        directions = [("", fixed)]
        if "moved_reverse" in prediction:
            if moving is None:
                raise ValueError("the prediction holds a reverse direction: pass the moving image too")
            directions.append(("_reverse", moving))
        return directions

    def terms(
        self, prediction: Mapping[str, torch.Tensor], fixed: torch.Tensor, moving: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Unweighted terms (scalars) whose weight is not 0 and whose outputs are present."""
        w = self.weights
        out: dict[str, list[torch.Tensor]] = {k: [] for k in w}
        reg_key = "flow" if self.regularize == "flow" else "velocity"
        for suffix, target in self._directions(prediction, fixed, moving):
            if w["similarity"]:
                out["similarity"].append(self.similarity(prediction["moved" + suffix], target))
            if w["smoothness"] and reg_key + suffix in prediction:
                out["smoothness"].append(self.smoothness(prediction[reg_key + suffix]))
            if w["graph"] and "graph_loss" + suffix in prediction:
                out["graph"].append(prediction["graph_loss" + suffix])
            if "moved_half" + suffix in prediction:
                moved_half = prediction["moved_half" + suffix]
                if w["similarity_half"]:
                    mode = linear_mode(self.spatial_dims)
                    small = F.interpolate(target, size=moved_half.shape[2:], mode=mode, align_corners=False)
                    out["similarity_half"].append(self.similarity(moved_half, small))
                if w["smoothness_half"]:
                    out["smoothness_half"].append(self.smoothness(prediction["flow_half" + suffix]))
        if w["inverse_consistency"] and "flow_reverse" in prediction:
            out["inverse_consistency"].append(self.inverse_consistency(prediction["flow"], prediction["flow_reverse"]))
        return {k: torch.stack(v).sum() for k, v in out.items() if v}

    def forward(
        self, prediction: Mapping[str, torch.Tensor], fixed: torch.Tensor, moving: torch.Tensor | None = None
    ) -> torch.Tensor:
        terms = self.terms(prediction, fixed, moving)
        return sum((self.weights[k] * v for k, v in terms.items()), fixed.new_zeros(()))


@register_loss("micdir")
class MicdirLoss(RegistrationLoss):
    """MICDIR's training loss (code defaults): ``1.2 (-NCC) + 1.0 grad-L2 + 1.0 graph`` over both
    directions, plus ``0.5 (-NCC) + 0.5 grad-L2`` at half resolution; global NCC; inverse consistency
    off (``inverse_consistency_weight`` turns on the paper's cycle term). Same arguments as
    :class:`RegistrationLoss`.
    """


@register_loss("voxelmorph")
class VoxelMorphLoss(RegistrationLoss):
    """VoxelMorph's loss: local NCC (window 9) + 1.0 grad-L2 of the velocity; no graph or half-resolution terms.

    Takes :class:`RegistrationLoss`'s keyword arguments; only the defaults in :attr:`DEFAULTS` differ.
    """

    DEFAULTS: dict[str, object] = {
        "similarity": "lncc",
        "regularize": "velocity",
        "similarity_weight": 1.0,
        "graph_weight": 0.0,
        "half_similarity_weight": 0.0,
        "half_smoothness_weight": 0.0,
    }

    def __init__(self, spatial_dims: int = 3, **kwargs: object) -> None:
        super().__init__(spatial_dims, **{**self.DEFAULTS, **kwargs})  # type: ignore[arg-type]  # YAML kwargs, checked by the loss
