"""Loss registry: MONAI's losses by name; method losses register themselves in their own modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from monai.losses import DeepSupervisionLoss, DiceCELoss, DiceLoss
from torch import nn

_LOSSES: dict[str, Callable[..., nn.Module]] = {}


def register_loss(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a loss class or factory under ``name`` (``loss.name`` in pipeline YAML)."""

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _LOSSES[name] = factory
        return factory

    return decorator


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
    import medseg.losses  # noqa: F401  (registers the method losses)

    if name not in _LOSSES:
        raise KeyError(f"unknown loss '{name}'; known: {', '.join(sorted(_LOSSES))}")
    loss = _LOSSES[name](**kwargs)
    return DeepSupervisionLoss(loss, weight_mode="exp") if deep_supervision else loss


def list_losses() -> list[str]:
    import medseg.losses  # noqa: F401

    return sorted(_LOSSES)
