"""VoxelMorph (VxmDense) baseline on MONAI's ``VoxelMorphUNet``, with MICDIR's output contract.

Balakrishnan et al., TMI 2019 / Dalca et al., MedIA 2019. MONAI's ``VoxelMorphUNet`` builds the U-Net;
we do not use MONAI's ``VoxelMorph`` wrapper because its ``half_res`` path multiplies the velocity by 2
when halving the grid and by 0.5 when doubling it (VoxelMorph's ``ResizeTransform`` does the opposite,
as displacements in voxels shrink with the grid) and hard-codes trilinear interpolation (3D only).
Integration and warping are the ones :class:`~medseg.networks.micdir.MICDIR` uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from monai.networks.nets import VoxelMorphUNet
from torch import nn

from medseg.networks.blocks.registration import DiffeomorphicIntegration, Warp, check_pair, check_widths
from medseg.networks.micdir import registration_example_inputs
from medseg.networks.registry import register_network


@register_network(
    "voxelmorph",
    spatial_dims=(2, 3),
    tiny_kwargs=lambda d: {
        "spatial_dims": d,
        "encoder_channels": (4, 8, 8),
        "decoder_channels": (8, 8, 8, 8, 4),
        "integration_steps": 2,
        "bidirectional": True,
    },
    example_inputs=registration_example_inputs,
    output_kind="displacement",
    description="VoxelMorph (VxmDense) diffeomorphic registration baseline on MONAI's VoxelMorphUNet",
)
class VoxelMorph(nn.Module):
    """VxmDense: U-Net on ``cat(moving, fixed)`` -> stationary velocity -> scaling and squaring.

    The U-Net matches VxmDense level for level: encoder convs (stride 1, each level after the first
    preceded by 2x max pooling), a conv at the coarsest level, then per level conv -> nearest 2x
    upsampling -> concatenation with the skip; the remaining decoder widths are convs at full resolution;
    a final conv gives the velocity (initialised from N(0, 1e-5) as VoxelMorph does). LeakyReLU(0.2).

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of each image.
        encoder_channels: VxmDense ``enc_nf`` (default 16, 32, 32, 32).
        decoder_channels: VxmDense ``dec_nf`` (default 32, 32, 32, 32, 32, 16, 16); needs at least
            ``len(encoder_channels) + 1`` entries: one per level (coarsest first), then full-resolution convs.
            MICDIR's own baseline used encoder (32,) * 5, decoder (32,) * 6 + (16,), 3 integration steps.
        integration_steps: scaling-and-squaring steps (VxmDense: 7); 0 predicts the displacement directly.
        integration_downsize: integrate at ``1/integration_downsize`` resolution (VxmDense: 2).
        bidirectional: also return the inverse field (VxmDense ``bidir``: the negated velocity integrated)
            and the fixed image warped onto the moving one.
        padding_mode: image warping outside the grid (``"zeros"``).

    Inputs:
        ``fixed``, ``moving``: ``(B, in_channels, *spatial)``; spatial sizes divisible by
        ``2 ** len(encoder_channels)`` (16 by default).

    Returns:
        dict with ``flow`` ``(B, dims, *spatial)`` (moving -> fixed, voxels), ``moved`` and ``velocity``;
        with ``bidirectional`` also ``flow_reverse`` and ``moved_reverse``, as :class:`MICDIR`.

    Example:
        >>> net = VoxelMorph(3, encoder_channels=(4, 8), decoder_channels=(8, 8, 4))
        >>> net(torch.rand(1, 1, 16, 16, 16), torch.rand(1, 1, 16, 16, 16))["flow"].shape
        torch.Size([1, 3, 16, 16, 16])
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        encoder_channels: Sequence[int] = (16, 32, 32, 32),
        decoder_channels: Sequence[int] = (32, 32, 32, 32, 32, 16, 16),
        integration_steps: int = 7,
        integration_downsize: int = 2,
        bidirectional: bool = False,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        enc, dec = check_widths(spatial_dims, in_channels, encoder_channels, decoder_channels)
        n = len(enc)
        if n < 1 or len(dec) < n + 1:
            raise ValueError(f"need encoder_channels and at least {n + 1} decoder_channels, got {decoder_channels}")
        channels = [c for k in range(n) for c in (enc[k], dec[n - 1 - k])]
        self.spatial_dims = spatial_dims
        self.levels = n
        #: spatial sizes must be divisible by this (inference pads to it)
        self.size_divisor = 2**n
        self.bidirectional = bidirectional
        self.unet = VoxelMorphUNet(
            spatial_dims=spatial_dims,
            in_channels=2 * in_channels,
            unet_out_channels=dec[n],
            channels=channels,
            final_conv_channels=dec[n + 1 :],
        )
        flow_conv = cast(Any, self.unet.net)[1].final_conv_out.conv  # the UNet's final convolution
        nn.init.normal_(flow_conv.weight, mean=0.0, std=1e-5)
        nn.init.zeros_(flow_conv.bias)
        self.integrate = DiffeomorphicIntegration(integration_steps, integration_downsize)
        self.warp = Warp("bilinear", padding_mode)

    def forward(
        self, fixed: torch.Tensor, moving: torch.Tensor, bidirectional: bool | None = None
    ) -> dict[str, torch.Tensor]:
        check_pair(fixed, moving, self.spatial_dims, stride=self.size_divisor)
        velocity = self.unet(torch.cat([moving, fixed], dim=1))
        flow = self.integrate(velocity)
        out = {"flow": flow, "moved": self.warp(moving, flow), "velocity": velocity}
        if self.bidirectional if bidirectional is None else bidirectional:
            flow_reverse = self.integrate(-velocity)
            out.update(flow_reverse=flow_reverse, moved_reverse=self.warp(fixed, flow_reverse))
        return out
