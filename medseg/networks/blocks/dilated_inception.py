"""Residual inception block with dilated branches (IVD-Net's encoder/decoder module), any dimensionality.

Built from MONAI's ``Convolution`` (conv + BatchNorm + ReLU); only the wiring is ours, since MONAI has no
inception block of this shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

#: IVD-Net's five branches as ``(kernel, dilation)``: 1, 3, 5, and 3 with dilation 2 and 4
#: (``Conv_residual_conv_Inception_Dilation*`` in josedolz/IVD-Net ``IVD_Net.py``).
IVD_BRANCHES: tuple[tuple[int, int], ...] = ((1, 1), (3, 1), (5, 1), (3, 2), (3, 4))


def conv_bn_relu(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int | Sequence[int] = 3,
    dilation: int | Sequence[int] = 1,
) -> Convolution:
    """``Conv (bias, "same" padding) -> BatchNorm -> ReLU``, as ``conv_block`` in the IVD-Net code."""
    return Convolution(
        spatial_dims,
        in_channels,
        out_channels,
        kernel_size=kernel_size,
        dilation=dilation,
        act="RELU",
        norm="BATCH",
    )


def asymmetric_branch(spatial_dims: int, channels: int, kernel: int, dilation: int) -> nn.Sequential:
    """One factorised branch: ``k x 1`` then ``1 x k`` (2D) or ``k x 1 x 1``, ``1 x k x 1``, ``1 x 1 x k`` (3D).

    Each factor is followed by BatchNorm + ReLU, as ``conv_block_Asym_Inception`` in the IVD-Net code; the
    dilation acts along the same axis as the kernel. The 3D form is our natural extension (the paper is 2D).
    """
    layers = []
    for axis in range(spatial_dims):
        kernel_size = [1] * spatial_dims
        dilations = [1] * spatial_dims
        kernel_size[axis] = kernel
        dilations[axis] = dilation
        layers.append(conv_bn_relu(spatial_dims, channels, channels, kernel_size, dilations))
    return nn.Sequential(*layers)


class DilatedInceptionBlock(nn.Module):
    """Residual inception block with dilated branches (IVD-Net).

    ``x1 = CBR3(x)``; five parallel branches on ``x1`` (kernel 1, 3, 5, and 3 with dilation 2 and 4 by
    default), concatenated, fused by a 1x1 CBR, added to ``x1``, then a last 3x3 CBR. ``CBR`` is
    conv + BatchNorm + ReLU. With ``asymmetric=True`` each branch is factorised along the axes
    (:func:`asymmetric_branch`; IVD-Net's encoder and bridge), otherwise it is a square ``k x k`` CBR
    (IVD-Net's decoder).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels (also the width of every branch).
        asymmetric: factorised ``k x 1`` / ``1 x k`` branches instead of square kernels.
        branches: ``(kernel, dilation)`` per branch; default :data:`IVD_BRANCHES`.

    Shapes:
        ``(B, in_channels, *spatial) -> (B, out_channels, *spatial)`` (spatial size kept).

    Example:
        >>> block = DilatedInceptionBlock(2, 1, 8)
        >>> block(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 8, 16, 16])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        asymmetric: bool = True,
        branches: Sequence[tuple[int, int]] = IVD_BRANCHES,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channels must be positive, got in={in_channels}, out={out_channels}")
        if not branches or any(k < 1 or k % 2 == 0 or d < 1 for k, d in branches):
            raise ValueError(f"branches need odd kernels and positive dilations, got {list(branches)}")
        self.conv_in = conv_bn_relu(spatial_dims, in_channels, out_channels, 3)
        self.branches = nn.ModuleList(
            asymmetric_branch(spatial_dims, out_channels, k, d)
            if asymmetric
            else conv_bn_relu(spatial_dims, out_channels, out_channels, k, d)
            for k, d in branches
        )
        self.fuse = conv_bn_relu(spatial_dims, out_channels * len(branches), out_channels, 1)
        self.conv_out = conv_bn_relu(spatial_dims, out_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv_in(x)
        fused = self.fuse(torch.cat([branch(x1) for branch in self.branches], dim=1))
        return self.conv_out(fused + x1)
