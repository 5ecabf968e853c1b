"""Plain 2D/3D UNet baseline: MONAI's DynUNet (nnU-Net layout), wrapped with simpler arguments."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.networks.nets import DynUNet

from medseg.networks.registry import register_network


@register_network(
    "unet",
    spatial_dims=(2, 3),
    tiny_kwargs=lambda d: {"spatial_dims": d, "in_channels": 1, "out_channels": 3, "filters": (4, 8, 16)},
    description="nnU-Net-style UNet (MONAI DynUNet): baseline for every task",
)
class UNet(DynUNet):
    """nnU-Net-style UNet built on MONAI's ``DynUNet`` (not rewritten).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (modalities).
        out_channels: classes including background.
        filters: width of each level; its length sets the depth.
        strides: downsampling per level (first is usually 1); default ``(1, 2, 2, ...)``. Per-axis tuples
            allow anisotropic pooling, e.g. ``(2, 2, 1)`` for thick slices.
        kernel_size: convolution kernel per level (int or per-axis tuple), default 3.
        norm: ``"instance"`` or ``"batch"``.
        dropout: dropout probability (None: off).
        deep_supervision: return the full-resolution output plus ``deep_supervision_heads`` lower ones
            (upsampled) as a list in training mode.
        res_block: residual blocks in the encoder/decoder.

    Shapes:
        input ``(B, in_channels, *spatial)``, output ``(B, out_channels, *spatial)``; spatial sizes must be
        divisible by the product of the strides.

    Example:
        >>> net = UNet(3, 1, 3, filters=(8, 16, 32))
        >>> net(torch.zeros(1, 1, 32, 32, 32)).shape
        torch.Size([1, 3, 32, 32, 32])
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        filters: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[int | Sequence[int]] | None = None,
        kernel_size: int | Sequence[int | Sequence[int]] = 3,
        norm: str = "instance",
        dropout: float | None = None,
        deep_supervision: bool = False,
        deep_supervision_heads: int = 1,
        res_block: bool = False,
    ) -> None:
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if len(filters) < 2:
            raise ValueError("filters needs at least two levels")
        strides = list(strides) if strides is not None else [1] + [2] * (len(filters) - 1)
        if len(strides) != len(filters):
            raise ValueError(f"strides has {len(strides)} entries for {len(filters)} levels")
        kernels = list(kernel_size) if isinstance(kernel_size, Sequence) else [kernel_size] * len(filters)
        norms: dict[str, tuple[str, dict[str, bool]] | str] = {"instance": ("INSTANCE", {"affine": True}), "batch": "BATCH"}
        norm_name = norms.get(norm)
        if norm_name is None:
            raise ValueError(f"norm must be 'instance' or 'batch', got {norm!r}")
        super().__init__(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=kernels,
            strides=strides,
            upsample_kernel_size=strides[1:],
            filters=list(filters),
            dropout=dropout,
            norm_name=norm_name,
            deep_supervision=deep_supervision,
            deep_supr_num=deep_supervision_heads,
            res_block=res_block,
        )

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """``nn.Module.load_state_dict`` that also accepts plain dicts (safetensors) with BatchNorm.

        DynUNet registers its blocks twice (``skip_layers`` aliases them). A plain dict carries no module
        version metadata, so BatchNorm would invent ``num_batches_tracked`` under every alias name, which
        ``safetensors.torch.load_model`` then reports as unexpected keys. The current versions are supplied.
        """
        if getattr(state_dict, "_metadata", None) is None:
            state_dict = OrderedDict(state_dict)
            state_dict._metadata = self.state_dict()._metadata  # type: ignore[attr-defined]  # torch keeps module versions in OrderedDict._metadata
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        out = super().forward(x)
        if self.training and self.deep_supervision:
            return list(torch.unbind(out, dim=1))  # DynUNet stacks heads on dim 1
        return out
