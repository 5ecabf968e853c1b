"""H-DenseUNet's weighted cross-entropy and its hybrid (HFF + lambda x 2D) loss (Li et al., IEEE TMI 2018)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medseg.losses.registry import register_loss

LITS_CLASS_WEIGHTS = (0.78, 0.65, 8.57)  # background, liver, tumour


def _labels(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Integer labels ``(B, *S)`` from ``(B, 1, *S)`` / ``(B, *S)`` indices or a ``(B, C, *S)`` one-hot target."""
    if target.shape == prediction.shape and prediction.shape[1] > 1:
        return target.argmax(1)
    if target.ndim == prediction.ndim and target.shape[1] == 1:
        target = target[:, 0]
    if target.shape != prediction.shape[:1] + prediction.shape[2:]:
        raise ValueError(f"target {tuple(target.shape)} does not fit prediction {tuple(prediction.shape)}")
    return target.long()


@register_loss("weighted_ce")
class WeightedCrossEntropyLoss(nn.Module):
    """``-(1/N) sum_i w[y_i] log softmax(z_i)[y_i]``: class-weighted cross-entropy averaged over voxels.

    Registered as ``loss.name: weighted_ce`` (``loss.kwargs: {class_weights: [...]}``).

    The paper's (and code's) loss divides by the number of voxels ``N``. ``torch.nn.CrossEntropyLoss(weight=w)``
    with ``reduction="mean"`` divides by ``sum_i w[y_i]`` instead, which cancels the weights' overall scale and
    changes the balance between batches; ``normalise_by_weights=True`` gives that torch behaviour.

    The code computes ``log(clip(softmax, 1e-10, 1))``; we use ``log_softmax`` (same values above the clip,
    finite gradients everywhere).

    Args:
        class_weights: one weight per class (LiTS: background 0.78, liver 0.65, tumour 8.57).
        normalise_by_weights: divide by the summed weights of the voxels (torch) instead of their count (paper).
        ignore_index: a label whose voxels are excluded (``None``: every label must be a class). The code only
            scores labels 0, 1, 2, which ``ignore_index`` covers for one extra label.

    Shapes:
        ``prediction`` logits ``(B, C, *S)``; ``target`` labels ``(B, 1, *S)`` or ``(B, *S)``, or one-hot
        ``(B, C, *S)``. Returns a scalar.

    Example:
        >>> loss = WeightedCrossEntropyLoss()
        >>> round(loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4)).item(), 4)  # 0.78 * log 3
        0.8569
    """

    def __init__(
        self,
        class_weights: Sequence[float] = LITS_CLASS_WEIGHTS,
        normalise_by_weights: bool = False,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        if len(class_weights) < 2 or any(float(w) < 0 for w in class_weights):
            raise ValueError(f"class_weights needs >= 2 non-negative weights, got {tuple(class_weights)}")
        self.class_weights = tuple(float(w) for w in class_weights)  # a tensor per call: any device and dtype
        self.normalise_by_weights = normalise_by_weights
        self.ignore_index = ignore_index

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if prediction.shape[1] != len(self.class_weights):
            raise ValueError(f"prediction has {prediction.shape[1]} classes, class_weights {len(self.class_weights)}")
        labels = _labels(prediction, target)
        weight = torch.tensor(self.class_weights, dtype=prediction.dtype, device=prediction.device)
        if self.normalise_by_weights:
            ignore = -100 if self.ignore_index is None else self.ignore_index
            return F.cross_entropy(prediction, labels, weight=weight, ignore_index=ignore)
        if self.ignore_index is None:
            return F.cross_entropy(prediction, labels, weight=weight, reduction="none").mean()
        valid = labels != self.ignore_index
        per_voxel = F.cross_entropy(prediction, labels.masked_fill(~valid, 0), weight=weight, reduction="none")
        return (per_voxel * valid).sum() / valid.sum().clamp(min=1)


@register_loss("hdenseunet")
class HDenseUNetLoss(nn.Module):
    """``L(HFF logits) + lambda_2d * L(2D logits)`` with ``L`` the weighted cross-entropy, on interior slices.

    Registered as ``loss.name: hdenseunet``; the trainer passes the network's list output to it untouched (it
    is not a deep-supervision list: leave ``deep_supervision`` off). Takes
    :class:`medseg.networks.hdenseunet.HDenseUNet`'s training output ``[hff_logits, logits_2d]`` (a
    single tensor is scored as HFF logits alone). Paper: ``lambda_2d = 0.5``; the released code trains on the
    HFF output only: ``lambda_2d=0``. The code scores only the interior slices of each chunk (its loss drops
    the first and last of 8 slices): ``edge_slices=1`` (the paper does not say; 0 scores all).

    Args:
        class_weights, normalise_by_weights, ignore_index: see :class:`WeightedCrossEntropyLoss`.
        lambda_2d: weight of the 2D network's loss.
        edge_slices: slices dropped at each end of the last (slice) axis before scoring.

    Shapes: each prediction ``(B, C, I, J, K)``; target ``(B, 1, I, J, K)``. Returns a scalar.

    Example:
        >>> loss = HDenseUNetLoss()
        >>> loss([torch.zeros(1, 3, 4, 4, 4), torch.zeros(1, 3, 4, 4, 4)], torch.zeros(1, 1, 4, 4, 4)).shape
        torch.Size([])
    """

    def __init__(
        self,
        class_weights: Sequence[float] = LITS_CLASS_WEIGHTS,
        lambda_2d: float = 0.5,
        edge_slices: int = 1,
        normalise_by_weights: bool = False,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        if lambda_2d < 0:
            raise ValueError(f"lambda_2d must be >= 0, got {lambda_2d}")
        if edge_slices < 0:
            raise ValueError(f"edge_slices must be >= 0, got {edge_slices}")
        self.ce = WeightedCrossEntropyLoss(class_weights, normalise_by_weights, ignore_index)
        self.lambda_2d = float(lambda_2d)
        self.edge_slices = edge_slices

    def _interior(self, x: torch.Tensor) -> torch.Tensor:
        m = self.edge_slices
        if m == 0:
            return x
        if x.shape[-1] <= 2 * m:
            raise ValueError(f"a chunk of {x.shape[-1]} slices has no interior with edge_slices={m}")
        return x[..., m:-m]

    def forward(self, prediction: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        outputs = [prediction] if isinstance(prediction, torch.Tensor) else list(prediction)
        if not 1 <= len(outputs) <= 2:
            raise ValueError(f"expected [hff_logits] or [hff_logits, logits_2d], got {len(outputs)} tensors")
        target = self._interior(target)
        loss = self.ce(self._interior(outputs[0]), target)
        if len(outputs) == 2 and self.lambda_2d > 0:
            loss = loss + self.lambda_2d * self.ce(self._interior(outputs[1]), target)
        return loss
