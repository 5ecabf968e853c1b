"""Nested-class BraTS network: the Isensee et al. (BraTS 2017) residual U-Net with a multi-level head.

Backbone: Isensee, Kickingereder, Wick, Bendszus, Maier-Hein, "Brain tumor segmentation and radiomics survival
prediction: contribution to the BRATS 2017 challenge" (their released Lasagne code is
``MIC-DKFZ/BraTS2017/network_architecture.py``; re-implemented here from the paper, nothing copied). Head:
Hu, Li, Zhao, Dong, Menze, Piraud (BrainLes 2018) with the multi-level activation of
:class:`~medseg.networks.blocks.multilevel.MultiLevelActivation`.

Choices where the paper, the released code and this port differ (paper default unless noted):

- ``base_filters=16`` (paper); the released code defaults to 8.
- Every convolution that computes features is followed (or, in the pre-activation residual context modules,
  preceded) by instance norm + LeakyReLU(0.01). As in the released code, each level's residual sum passes
  through norm + LeakyReLU once, giving both the skip and the input of the next stride-2 convolution. The
  released code skips the norm on level 1's skip and before level 1's first context convolution; this port is
  uniform (paper: "context module = pre-activation residual block" everywhere).
- Instance norm uses per-instance statistics at inference too (Lasagne's ``BatchNormLayer(axes=(2, 3, 4))``
  would use running averages in deterministic mode).
- Dropout is element-wise (``nn.Dropout``, as Lasagne's ``DropoutLayer``), p = 0.3.
- Upsampling repeats voxels (``upsample_mode="nearest"``, paper: "simple upscale"); ``"linear"`` is offered.
- The released code has one extra 1x1 conv + norm + LeakyReLU after the deepest upsampling module; the paper
  does not describe it and this port leaves it out.
- Deep supervision (Isensee's scheme): 1x1 segmentation heads on the activated output of the localisation
  module's 3x3 convolution (where the released code taps; a head on the module's linear 1x1 output would
  stack two linear maps) at the ``deep_supervision_heads`` decoder levels just above full resolution
  (default 2: scales 1/2 and 1/4). The deepest head is upsampled, added to the next one, upsampled again and
  added to the full-resolution head: the network returns this *sum* (as Isensee does). With
  ``return_levels=True`` it also returns the partial sums at the coarser scales in training mode, for a
  deep-supervised loss (:class:`medseg.losses.nested.NestedLoss` accepts the list).
- He-normal (fan-in) initialisation of convolutions, zero biases (released code).

Heads (same backbone, pipeline switch):

- ``head="multilevel"`` (``out_channels=1``, the default): one channel z, returned as the K nested region
  logits ``s * (z - b_k)`` (WT, TC, ET); nested by construction. ``output_kind == "nested"``.
- ``head="softmax"`` (``out_channels=4``): class logits over the contiguous levels 0 background, 1 oedema,
  2 necrosis/NCR, 3 enhancing (see :mod:`medseg.data.brats_labels`). ``output_kind == "labels"``.
- ``head="sigmoid"`` (``out_channels=3``): independent region logits (WT, TC, ET), the region-based baseline
  that *can* violate nesting. ``output_kind == "regions"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv, Norm
from torch import nn

from medseg.networks.blocks.multilevel import MultiLevelActivation
from medseg.networks.registry import register_network

HEADS = {"multilevel": "nested", "softmax": "labels", "sigmoid": "regions"}


def _norm_act(dims: int, channels: int, slope: float) -> nn.Sequential:
    return nn.Sequential(Norm[Norm.INSTANCE, dims](channels, affine=True), nn.LeakyReLU(slope))


def _conv(dims: int, cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Module:
    return Conv[Conv.CONV, dims](cin, cout, kernel_size=kernel, stride=stride, padding=kernel // 2)


def _upsample(dims: int, mode: str) -> nn.Upsample:
    if mode == "nearest":
        return nn.Upsample(scale_factor=2, mode="nearest")
    return nn.Upsample(scale_factor=2, mode="bilinear" if dims == 2 else "trilinear", align_corners=False)


class ContextModule(nn.Module):
    """Pre-activation residual block: x + conv(act(norm(drop(conv(act(norm(x))))))), widths unchanged.

    Shapes: ``(B, C, *spatial) -> (B, C, *spatial)``.
    """

    def __init__(self, dims: int, channels: int, dropout: float, slope: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm_act(dims, channels, slope),
            _conv(dims, channels, channels),
            nn.Dropout(dropout),
            _norm_act(dims, channels, slope),
            _conv(dims, channels, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UpsamplingModule(nn.Sequential):
    """norm + LeakyReLU, x2 upsampling, 3x3 conv to ``cout`` (half the width), norm + LeakyReLU.

    Shapes: ``(B, cin, *s) -> (B, cout, *2s)``.
    """

    def __init__(self, dims: int, cin: int, cout: int, slope: float, mode: str) -> None:
        super().__init__(
            _norm_act(dims, cin, slope), _upsample(dims, mode), _conv(dims, cin, cout), _norm_act(dims, cout, slope)
        )


@register_network(
    "nested_resunet",
    spatial_dims=(2, 3),
    tiny_kwargs=lambda d: {
        "spatial_dims": d,
        "in_channels": 4,
        "out_channels": 1,
        "base_filters": 2,
        "levels": 3,
        "deep_supervision_heads": 1,
    },
    output_kind="nested",
    description="Isensee 2017 residual U-Net with the nested multi-level head (BraTS WT/TC/ET)",
)
class NestedResUNet(nn.Module):
    """Isensee et al. 2017 residual U-Net with a multi-level (nested), softmax or sigmoid head.

    Args:
        spatial_dims: 3 (paper) or 2.
        in_channels: input modalities (BraTS: T1, T1ce, T2, FLAIR = 4).
        out_channels: channels of the segmentation heads: 1 for the multi-level head, 4 for softmax over the
            levels, 3 for independent region sigmoids.
        base_filters: ``b``; level i has ``b * 2**i`` filters (paper: b = 16).
        levels: number of resolution levels including the bottleneck (paper: 5).
        filters: explicit widths per level (overrides ``base_filters``; length must equal ``levels``).
        dropout: dropout probability inside the context modules (paper: 0.3).
        negative_slope: LeakyReLU slope (paper: 0.01).
        deep_supervision_heads: extra segmentation heads summed into the output, at decoder scales
            1/2, 1/4, ... (paper: 2; 0 disables; at most ``levels - 2``).
        upsample_mode: ``"nearest"`` (paper: voxel repetition) or ``"linear"``.
        return_levels: in training mode return ``[full, partial sum at 1/2, at 1/4, ...]`` instead of the
            summed output alone (coarser entries at their own resolution).
        head: ``"multilevel"``, ``"softmax"`` or ``"sigmoid"``; default inferred: ``out_channels == 1`` ->
            multilevel, otherwise softmax.
        offsets, steepness, learn_offsets, offset_init: the multi-level activation (multilevel head only;
            see :class:`~medseg.networks.blocks.multilevel.MultiLevelActivation`, reconstructed defaults):
            initial offsets ``b_1 < ... < b_K`` (0.5, 1.5, 2.5), sigmoid steepness (5), learnt offsets (False),
            ``offset_init`` ``"centred"`` (default: the offsets are shifted onto the median of z of the first
            training batch, so every level is reachable from the start) or ``"fixed"`` (as given, the
            behaviour before issue 19).

    Shapes:
        input ``(B, in_channels, *spatial)`` with every spatial size divisible by ``2**(levels - 1)``;
        output ``(B, K, *spatial)`` region logits for the multilevel head (K = ``len(offsets)``), otherwise
        ``(B, out_channels, *spatial)`` logits. ``output_kind`` names the head for the predictor.

    Example:
        >>> net = NestedResUNet(3, 4, 1, base_filters=4, levels=3, deep_supervision_heads=1)
        >>> net(torch.zeros(1, 4, 16, 16, 16)).shape  # WT, TC, ET logits
        torch.Size([1, 3, 16, 16, 16])
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 4,
        out_channels: int = 1,
        base_filters: int = 16,
        levels: int = 5,
        filters: Sequence[int] | None = None,
        dropout: float = 0.3,
        negative_slope: float = 0.01,
        deep_supervision_heads: int = 2,
        upsample_mode: str = "nearest",
        return_levels: bool = False,
        head: str | None = None,
        offsets: Sequence[float] = (0.5, 1.5, 2.5),
        steepness: float = 5.0,
        learn_offsets: bool = False,
        offset_init: str = "centred",
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}")
        if levels < 2:
            raise ValueError(f"levels must be >= 2, got {levels}")
        if filters is None:
            if base_filters < 1:
                raise ValueError(f"base_filters must be >= 1, got {base_filters}")
            filters = [base_filters * 2**i for i in range(levels)]
        filters = [int(f) for f in filters]
        if len(filters) != levels or min(filters) < 1:
            raise ValueError(f"filters must be {levels} positive widths, got {filters}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if negative_slope < 0:
            raise ValueError(f"negative_slope must be >= 0, got {negative_slope}")
        if not 0 <= deep_supervision_heads <= levels - 2:
            raise ValueError(f"deep_supervision_heads must be in [0, {levels - 2}], got {deep_supervision_heads}")
        if upsample_mode not in ("nearest", "linear"):
            raise ValueError(f"upsample_mode must be 'nearest' or 'linear', got {upsample_mode!r}")
        head = head or ("multilevel" if out_channels == 1 else "softmax")
        if head not in HEADS:
            raise ValueError(f"head must be one of {sorted(HEADS)}, got {head!r}")
        if head == "multilevel" and out_channels != 1:
            raise ValueError(f"the multilevel head has one output channel, got out_channels={out_channels}")
        if head == "softmax" and out_channels < 2:
            raise ValueError("a softmax head needs out_channels >= 2")

        dims, slope = spatial_dims, negative_slope
        self.spatial_dims, self.levels, self.filters = dims, levels, filters
        self.head, self.output_kind, self.return_levels = head, HEADS[head], return_levels
        self.stem = _conv(dims, in_channels, filters[0])
        self.down = nn.ModuleList(_conv(dims, filters[i - 1], filters[i], stride=2) for i in range(1, levels))
        self.context = nn.ModuleList(ContextModule(dims, f, dropout, slope) for f in filters)
        self.skip_act = nn.ModuleList(_norm_act(dims, f, slope) for f in filters[:-1])
        self.up = nn.ModuleList(
            UpsamplingModule(dims, filters[d + 1], filters[d], slope, upsample_mode) for d in range(levels - 1)
        )
        # localisation module = 3x3 conv (width kept, 2 f) + norm + act, then 1x1 conv halving (levels > 0);
        # at full resolution the 1x1 conv is the segmentation head.
        self.local3 = nn.ModuleList(
            nn.Sequential(_conv(dims, 2 * f, 2 * f), _norm_act(dims, 2 * f, slope)) for f in filters[:-1]
        )
        self.local1 = nn.ModuleList(_conv(dims, 2 * f, f, kernel=1) for f in filters[1:-1])
        self.seg_heads = nn.ModuleList(
            _conv(dims, 2 * filters[d], out_channels, kernel=1) for d in range(deep_supervision_heads + 1)
        )
        self.head_upsample = _upsample(dims, upsample_mode)
        self.activation = (
            MultiLevelActivation(offsets, steepness, learn_offsets, offset_init) if head == "multilevel" else None
        )
        self._init_weights(slope)

    def _init_weights(self, slope: float) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(module.weight, a=slope, mode="fan_in", nonlinearity="leaky_relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _check_size(self, x: torch.Tensor) -> None:
        factor = 2 ** (self.levels - 1)
        if x.ndim != self.spatial_dims + 2 or any(s % factor for s in x.shape[2:]):
            raise ValueError(
                f"expected input (B, C, *spatial) with {self.spatial_dims} spatial sizes divisible by {factor}, "
                f"got {tuple(x.shape)}"
            )

    def forward_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """All outputs: ``[full resolution, partial sum at 1/2, at 1/4, ...]`` (after the multilevel head).

        The first entry is what ``forward`` returns; entry ``d`` has spatial size ``size / 2**d``.
        """
        self._check_size(x)
        skips: list[torch.Tensor] = []
        x = self.stem(x)
        for i in range(self.levels):
            if i > 0:
                x = self.down[i - 1](skips[-1])
            x = self.context[i](x)
            if i < self.levels - 1:
                skips.append(self.skip_act[i](x))
        segs: dict[int, torch.Tensor] = {}
        for d in range(self.levels - 2, -1, -1):
            x = self.local3[d](torch.cat([skips[d], self.up[d](x)], dim=1))
            if d < len(self.seg_heads):
                segs[d] = self.seg_heads[d](x)
            if d > 0:
                x = self.local1[d - 1](x)
        outputs = [segs[len(segs) - 1]]
        for d in range(len(segs) - 2, -1, -1):
            outputs.insert(0, self.head_upsample(outputs[0]) + segs[d])
        if self.activation is not None:
            outputs = [self.activation(o) for o in outputs]
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Summed output ``(B, K or out_channels, *spatial)``; a list (see ``return_levels``) when training."""
        outputs = self.forward_levels(x)
        return outputs if (self.training and self.return_levels) else outputs[0]
