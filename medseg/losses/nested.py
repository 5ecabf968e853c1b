"""Losses for the nested BraTS network: multi-level (nested region) head and softmax-over-levels head.

*Reconstruction* (Hu et al., BrainLes 2018 could not be read here): the multi-level head is trained with soft
Dice + binary cross-entropy on its K nested region maps against the region masks (WT, TC, ET for BraTS);
the alternative ``mode="mse"`` regresses the multi-level output ``(1/K) sum_k p_k`` on ``level / K``.

Both losses take the *level map* as target (0 background, 1 oedema, 2 necrosis, 3 enhancing; see
:func:`medseg.data.brats_labels.labels_to_levels`), so one data path serves both heads, and both accept a list
of predictions for deep supervision (``NestedResUNet(return_levels=True)``), through MONAI's
``DeepSupervisionLoss`` (coarser targets by nearest-exact interpolation; default weights 1, 0.5, 0.25, ...).

Registered as ``loss.name: nested`` (:class:`NestedLoss`, for the ``nested`` and ``regions`` outputs) and
``loss.name: nested_softmax`` (:class:`SoftmaxLevelLoss`, for the ``nested_softmax`` output); the pipeline's
``loss.kwargs`` are their constructor arguments. They handle deep-supervision lists themselves
(``NestedResUNet(return_levels=True)``), so the network kwargs need no ``deep_supervision`` flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from monai.losses import DeepSupervisionLoss, DiceCELoss, DiceLoss
from torch import nn
from torch.nn.modules.loss import _Loss

from medseg.data.brats_labels import levels_to_regions
from medseg.losses.registry import register_loss

MODES = ("dice_bce", "mse")


def region_targets(target: torch.Tensor, num_levels: int, spatial_ndim: int) -> torch.Tensor:
    """Float region masks ``(B, K, *spatial)`` from a level map or from region masks.

    Args:
        target: levels ``(B, *spatial)`` or ``(B, 1, *spatial)``, or region masks ``(B, K, *spatial)``.
        num_levels: K.
        spatial_ndim: number of spatial dimensions of the prediction.
    """
    if target.ndim == spatial_ndim + 1:
        target = target.unsqueeze(1)
    if target.ndim != spatial_ndim + 2 or target.shape[1] not in (1, num_levels):
        raise ValueError(
            f"target must be levels (B, [1,] *spatial) or {num_levels} region masks (B, {num_levels}, *spatial), "
            f"got {tuple(target.shape)}"
        )
    if target.shape[1] == 1 and num_levels > 1:
        return levels_to_regions(target[:, 0].round().long(), num_levels, axis=1).float()
    return target.float()


class _TargetAdapter(nn.Module):
    """Shared plumbing: convert the target once, then MONAI's DeepSupervisionLoss over list predictions."""

    def __init__(self, loss: nn.Module, deep_supervision_weights: Sequence[float] | None) -> None:
        super().__init__()
        if deep_supervision_weights is not None and (
            not deep_supervision_weights or min(deep_supervision_weights) < 0
        ):
            raise ValueError(f"deep_supervision_weights must be non-negative, got {deep_supervision_weights}")
        weights = None if deep_supervision_weights is None else [float(w) for w in deep_supervision_weights]
        self.deep = DeepSupervisionLoss(cast(_Loss, loss), weight_mode="exp", weights=weights)

    def prepare(self, target: torch.Tensor, spatial_ndim: int) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, prediction: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        first = prediction if isinstance(prediction, torch.Tensor) else prediction[0]
        target = self.prepare(target, first.ndim - 2)
        if isinstance(prediction, torch.Tensor):
            return self.deep(prediction, target)
        return self.deep(list(prediction), target)


class _NestedRegionLoss(nn.Module):
    """Single-scale nested loss on region logits ``(B, K, *spatial)`` vs float masks ``(B, K, *spatial)``."""

    weights: torch.Tensor  # buffer: one weight per region

    def __init__(
        self, mode: str, weights: torch.Tensor, dice_weight: float, bce_weight: float, batch_dice: bool
    ) -> None:
        super().__init__()
        self.mode, self.dice_weight, self.bce_weight = mode, dice_weight, bce_weight
        self.register_buffer("weights", weights, persistent=False)
        self.dice = DiceLoss(sigmoid=True, batch=batch_dice, reduction="none")

    def forward(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        if logits.shape != masks.shape:
            raise ValueError(f"prediction {tuple(logits.shape)} and target {tuple(masks.shape)} differ")
        if self.mode == "mse":
            return F.mse_loss(torch.sigmoid(logits).mean(dim=1), masks.mean(dim=1))
        per_region = torch.zeros(logits.shape[1], device=logits.device, dtype=logits.dtype)
        if self.dice_weight:
            dice = self.dice(logits, masks)
            per_region = per_region + self.dice_weight * dice.transpose(0, 1).reshape(logits.shape[1], -1).mean(1)
        if self.bce_weight:
            bce = F.binary_cross_entropy_with_logits(logits, masks, reduction="none")
            per_region = per_region + self.bce_weight * bce.transpose(0, 1).reshape(logits.shape[1], -1).mean(1)
        weights = self.weights.to(per_region)
        return (weights * per_region).sum() / weights.sum()


@register_loss("nested")
class NestedLoss(_TargetAdapter):
    """Soft Dice + BCE on nested region logits (or MSE of the multi-level output), deep-supervision aware.

    Args:
        num_levels: K, the number of nested regions (3: WT, TC, ET).
        mode: ``"dice_bce"`` (default, our reconstruction) or ``"mse"`` (multi-level output vs level / K).
        region_weights: weight of each region's Dice + BCE term (normalised; default equal). Unused by mse.
        dice_weight, bce_weight: weights of the two terms.
        batch_dice: Dice over the whole batch per region (Isensee 2017's multi-class Dice is computed over the
            batch; also keeps cases without enhancing tumour from dominating); False: per sample.
        deep_supervision_weights: weights of ``[full, 1/2, 1/4, ...]`` predictions when a list is given
            (default MONAI "exp": 1, 0.5, 0.25, ...).

    Shapes:
        prediction: region logits ``(B, K, *spatial)`` (what ``NestedResUNet`` returns; works as well for
        an independent-sigmoid region head) or a list of them at decreasing resolution. target: levels
        ``(B, 1, *spatial)`` / ``(B, *spatial)`` with values 0..K, or region masks ``(B, K, *spatial)``.

    Example:
        >>> loss = NestedLoss()
        >>> levels = torch.randint(0, 4, (2, 1, 8, 8, 8))
        >>> float(loss(50.0 * (levels - torch.tensor([0.5, 1.5, 2.5]).view(1, 3, 1, 1, 1)), levels)) < 1e-3
        True
    """

    def __init__(
        self,
        num_levels: int = 3,
        mode: str = "dice_bce",
        region_weights: Sequence[float] | None = None,
        dice_weight: float = 1.0,
        bce_weight: float = 1.0,
        batch_dice: bool = True,
        deep_supervision_weights: Sequence[float] | None = None,
    ) -> None:
        if num_levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {num_levels}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        weights = [1.0] * num_levels if region_weights is None else [float(w) for w in region_weights]
        if len(weights) != num_levels or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"region_weights must be {num_levels} non-negative weights, not all zero: {weights}")
        if dice_weight < 0 or bce_weight < 0 or dice_weight + bce_weight <= 0:
            raise ValueError(f"dice_weight and bce_weight must be >= 0, not both 0: {dice_weight}, {bce_weight}")
        core = _NestedRegionLoss(mode, torch.tensor(weights), dice_weight, bce_weight, batch_dice)
        super().__init__(core, deep_supervision_weights)
        self.num_levels = num_levels

    def prepare(self, target: torch.Tensor, spatial_ndim: int) -> torch.Tensor:
        return region_targets(target, self.num_levels, spatial_ndim)


@register_loss("nested_softmax")
class SoftmaxLevelLoss(_TargetAdapter):
    """The softmax head's loss: MONAI ``DiceCELoss`` over the contiguous levels, deep-supervision aware.

    Args:
        batch_dice: Dice over the whole batch (as :class:`NestedLoss`).
        deep_supervision_weights: as :class:`NestedLoss`.
        **dice_ce_kwargs: further ``monai.losses.DiceCELoss`` arguments (``lambda_dice``, ``weight``, ...).

    Shapes:
        prediction: class logits ``(B, 4, *spatial)`` (or a list); target: levels ``(B, 1, *spatial)`` or
        ``(B, *spatial)`` (BraTS labels mapped by :func:`medseg.data.brats_labels.labels_to_levels`).
    """

    def __init__(
        self,
        batch_dice: bool = True,
        deep_supervision_weights: Sequence[float] | None = None,
        **dice_ce_kwargs: object,
    ) -> None:
        core = DiceCELoss(to_onehot_y=True, softmax=True, batch=batch_dice, **dice_ce_kwargs)  # type: ignore[arg-type]  # YAML kwargs, checked by MONAI
        super().__init__(core, deep_supervision_weights)

    def prepare(self, target: torch.Tensor, spatial_ndim: int) -> torch.Tensor:
        if target.ndim == spatial_ndim + 1:
            target = target.unsqueeze(1)
        return target.float()  # DeepSupervisionLoss interpolates the target: it must be floating point
