"""Loss registry: MONAI's losses by name; method losses register themselves in their own modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from monai.losses import DeepSupervisionLoss, DiceCELoss, DiceLoss
from torch import nn
from torch.nn.modules.loss import _Loss

from medseg.registry import Registry

#: losses by ``loss.name``; the modules of ``medseg.losses`` register theirs when it is first asked
LOSSES: Registry[Callable[..., nn.Module]] = Registry("loss", packages=["medseg.losses"], option="loss.name")
#: ``@register_loss(name)``: a loss class or factory as ``loss.name: name``
register_loss = LOSSES.register


@register_loss("dice_ce")
def dice_ce(**kwargs: Any) -> nn.Module:
    """MONAI ``DiceCELoss`` on integer targets ``(B, 1, *spatial)`` and logits ``(B, C, *spatial)``."""
    return DiceCELoss(to_onehot_y=True, softmax=True, **kwargs)


@register_loss("dice")
def dice(**kwargs: Any) -> nn.Module:
    """MONAI ``DiceLoss`` (softmax, one-hot target)."""
    return DiceLoss(to_onehot_y=True, softmax=True, **kwargs)


@register_loss("ce")
def cross_entropy(**kwargs: Any) -> nn.Module:
    """Cross-entropy on ``(B, 1, *spatial)`` integer targets (MONAI's DiceCE with the Dice term off)."""
    return DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=0.0, lambda_ce=1.0, **kwargs)


def create_loss(name: str, deep_supervision: bool = False, **kwargs: Any) -> nn.Module:
    """Loss ``name`` with ``kwargs``; wrapped in MONAI's ``DeepSupervisionLoss`` for list outputs."""
    loss = LOSSES.get(name)(**kwargs)
    return DeepSupervisionLoss(cast(_Loss, loss), weight_mode="exp") if deep_supervision else loss  # MONAI types it _Loss; any module works


def list_losses() -> list[str]:
    return LOSSES.names()
