"""Early-fusion baseline of IVD-Net: modalities stacked as channels into a plain UNet of matched size.

IVD-Net's claim is that per-modality paths with hyper-dense connections beat an early-fusion UNet *at a
similar parameter count*. This factory builds the registered ``unet`` (MONAI DynUNet, not rewritten) with
the same number of levels as the IVD-Net it is compared with, and picks its widths so that the parameter
counts match.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from medseg.networks.ivdnet import IVDNet, multimodal_example_inputs, multimodal_tiny_kwargs
from medseg.networks.registry import register_network
from medseg.networks.unet import UNet

#: widths are searched in steps of 1/8 of a channel at the first level (finer than doubling integers,
#: so that even tiny configurations land within a few percent of the target)
_STEPS_PER_CHANNEL = 8


def count_parameters(factory: Callable[..., nn.Module], **kwargs: Any) -> int:
    """Number of parameters of ``factory(**kwargs)``, built on the ``meta`` device (no memory, no init cost)."""
    with torch.device("meta"):
        module = factory(**kwargs)
    return sum(p.numel() for p in module.parameters())


@lru_cache(maxsize=64)
def ivdnet_parameter_count(
    spatial_dims: int = 2, n_modalities: int = 4, n_classes: int = 2, base_width: int = 32, depth: int = 4
) -> int:
    """Parameter count of ``IVDNet`` with these arguments (54,313,954 at the 2D paper defaults)."""
    return count_parameters(
        IVDNet, spatial_dims=spatial_dims, n_modalities=n_modalities, n_classes=n_classes,
        base_width=base_width, depth=depth,
    )


def _doubling_filters(steps: int, levels: int) -> tuple[int, ...]:
    return tuple(max(1, round(steps * 2**level / _STEPS_PER_CHANNEL)) for level in range(levels))


@lru_cache(maxsize=64)
def matched_unet_filters(
    target_params: int,
    spatial_dims: int = 2,
    in_channels: int = 4,
    out_channels: int = 2,
    levels: int = 5,
    norm: str = "batch",
) -> tuple[int, ...]:
    """Roughly doubling UNet widths ``(w, 2w, 4w, ...)`` whose parameter count is closest to ``target_params``.

    Args:
        target_params: parameter count to match (e.g. ``count_parameters(IVDNet, ...)``).
        spatial_dims, in_channels, out_channels, norm: the ``unet`` configuration.
        levels: number of UNet levels (``len(filters)``).

    Returns:
        ``filters`` for ``create_network("unet", ..., filters=...)``.

    Example:
        >>> matched_unet_filters(1_000_000)
        (12, 23, 46, 92, 184)
    """
    if target_params < 1:
        raise ValueError(f"target_params must be positive, got {target_params}")

    def count(steps: int) -> int:
        return count_parameters(
            UNet, spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
            filters=_doubling_filters(steps, levels), norm=norm,
        )

    low, high = 1, _STEPS_PER_CHANNEL
    while count(high) < target_params:
        low, high = high, high * 2
    while high - low > 1:  # invariant: count(high) >= target; count(low) < target unless low == 1
        mid = (low + high) // 2
        low, high = (mid, high) if count(mid) < target_params else (low, mid)
    best = min((low, high), key=lambda steps: abs(count(steps) - target_params))
    return _doubling_filters(best, levels)


@register_network(
    "early_fusion_unet",
    spatial_dims=(2, 3),
    tiny_kwargs=multimodal_tiny_kwargs,
    example_inputs=multimodal_example_inputs,
    description="IVD-Net baseline: modalities stacked as channels into a UNet with IVD-Net's parameter count",
)
def early_fusion_unet(
    spatial_dims: int = 2,
    n_modalities: int = 4,
    n_classes: int = 2,
    base_width: int = 32,
    depth: int = 4,
    filters: Sequence[int] | None = None,
    norm: str = "batch",
) -> UNet:
    """Early-fusion UNet whose parameter count matches the IVD-Net built with the same arguments.

    The modalities enter as the channels of one plain UNet (the registered ``unet``: MONAI DynUNet, two
    3x3 conv + norm + LeakyReLU per level, transposed-conv upsampling, concatenated skips) with
    ``depth + 1`` levels, i.e. the same number of poolings as IVD-Net. Its widths double per level and
    the first one is chosen by :func:`matched_unet_filters` so that the parameter count is the closest to
    IVD-Net's (within a few percent; e.g. ~54.3 M at paper defaults). BatchNorm by default, like IVD-Net.

    Args:
        spatial_dims: 2 or 3.
        n_modalities: input channels.
        n_classes: output logits.
        base_width, depth: the IVD-Net configuration whose parameter count is matched.
        filters: explicit UNet widths (skips the matching).
        norm: ``"batch"`` or ``"instance"``.

    Shapes:
        ``(B, n_modalities, *spatial) -> (B, n_classes, *spatial)``, spatial sizes divisible by ``2**depth``.

    Example:
        >>> net = early_fusion_unet(2, base_width=4)
        >>> net(torch.zeros(2, 4, 32, 32)).shape
        torch.Size([2, 2, 32, 32])
    """
    if filters is None:
        target = ivdnet_parameter_count(spatial_dims, n_modalities, n_classes, base_width, depth)
        filters = matched_unet_filters(target, spatial_dims, n_modalities, n_classes, depth + 1, norm)
    return UNet(spatial_dims, n_modalities, n_classes, filters=tuple(filters), norm=norm)
