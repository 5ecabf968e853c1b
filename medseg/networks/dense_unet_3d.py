"""H-DenseUNet's 3D DenseUNet (Li et al., IEEE TMI 2018): the lighter volumetric counterpart of the 2D network."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from medseg.networks.blocks.dense import Size
from medseg.networks.blocks.dense_unet import DenseUNetCore
from medseg.networks.registry import register_network


@register_network(
    "dense_unet_3d",
    spatial_dims=(3,),
    tiny_kwargs=lambda d: {
        "in_channels": 4, "out_channels": 3, "init_features": 8, "growth_rate": 4, "block_config": (1, 1, 1, 1),
        "bn_size": 2, "decoder_widths": (16, 8, 8, 8, 8),
    },
    example_inputs=lambda d, kw: (torch.randn(2, kw["in_channels"], 32, 32, 8),),
    description="H-DenseUNet 3D DenseUNet-65: in-plane pooling transitions, input = CT chunk + 2D predictions",
)
class DenseUNet3D(DenseUNetCore):
    """3D DenseUNet of H-DenseUNet, run on a CT chunk concatenated with the 2D network's per-slice output.

    Layout ``(B, C, I, J, K)`` with ``K`` the slice (z) axis. 7x7x7 stride-2 conv (96) + BN + ReLU, 3x3x3
    stride-2 max-pool (both also along z), dense blocks of 3, 4, 12, 8 layers (growth 32, bottleneck 128),
    transitions with compression 0.5 that pool in-plane only (2x2x1); widths after the blocks 192, 224, 496,
    504. Decoder: five x2 upsampling stages, the first three in-plane only, each 3x3x3 conv + BN + ReLU with
    widths 504, 224, 192, 96, 64; 1x1x1 conv to the classes. At the defaults it has 16.0 M parameters.

    Paper vs released code (``hybridnet.py``): the paper does not describe UNet connections for the 3D network
    and the code has them commented out, so ``decoder_skips`` defaults to off; on, every skip goes through a
    1x1x1 conv where widths differ. No dropout in the decoder (code). Kaiming-normal initialisation.

    Args:
        in_channels: CT channels + classes of the 2D output (1 + 3 = 4).
        out_channels: classes (3); ``None``: no classifier, ``forward`` returns the 64-channel features (as
            inside the hybrid, whose HFF layer replaces this classifier).
        init_features, growth_rate, block_config, bn_size, compression: encoder (96, 32, (3, 4, 12, 8), 4, 0.5).
        stem_stride, pool_stride: stride of the stem conv and max-pool per axis ((2, 2, 2) each).
        transition_pool: transition pooling per axis ((2, 2, 1): in-plane only).
        decoder_widths: decoder stage widths (504, 224, 192, 96, 64).
        decoder_skips: sum same-scale encoder features (off).
        dropout: dropout of the last decoder stage (0).
        upsample_mode: ``"nearest"`` (code) or ``"linear"``.

    Shapes:
        ``(B, in_channels, I, J, K) -> (B, out_channels, I, J, K)`` with ``I, J`` divisible by 32 and ``K`` by 4
        at the defaults (``size_divisor``); the paper's chunk is 224 x 224 x 12, the code's 224 x 224 x 8.

    Example:
        >>> net = DenseUNet3D(init_features=8, growth_rate=4, block_config=(1, 1, 1, 1),
        ...                   decoder_widths=(16, 8, 8, 8, 8))
        >>> net(torch.zeros(1, 4, 32, 32, 8)).shape
        torch.Size([1, 3, 32, 32, 8])
    """

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int | None = 3,
        init_features: int = 96,
        growth_rate: int = 32,
        block_config: Sequence[int] = (3, 4, 12, 8),
        bn_size: int = 4,
        compression: float = 0.5,
        stem_stride: Size = (2, 2, 2),
        pool_stride: Size = (2, 2, 2),
        transition_pool: Size = (2, 2, 1),
        decoder_widths: Sequence[int] = (504, 224, 192, 96, 64),
        decoder_skips: bool = False,
        dropout: float = 0.0,
        upsample_mode: str = "nearest",
    ) -> None:
        super().__init__(
            3, in_channels, out_channels, init_features, growth_rate, block_config, decoder_widths, bn_size,
            compression, stem_stride, pool_stride, transition_pool, decoder_skips, dropout,
            upsample_mode=upsample_mode,
        )
