"""H-DenseUNet's 2D DenseUNet (Li et al., IEEE TMI 2018): DenseNet-161 encoder + summing UNet decoder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from medseg.networks.blocks.dense_unet import DenseUNetCore, load_torchvision_densenet
from medseg.networks.registry import register_network


@register_network(
    "dense_unet_2d",
    spatial_dims=(2,),
    tiny_kwargs=lambda d: {
        "in_channels": 3, "out_channels": 3, "init_features": 8, "growth_rate": 4, "block_config": (1, 1, 1, 1),
        "bn_size": 2, "decoder_widths": (16, 8, 8, 8, 8),
    },
    example_inputs=lambda d, kw: (torch.randn(2, kw["in_channels"], 32, 32),),
    description="H-DenseUNet 2D DenseUNet-167: DenseNet-161 encoder, summing UNet decoder (2.5D slice stacks)",
)
class DenseUNet2D(DenseUNetCore):
    """2D DenseUNet of H-DenseUNet: an axial slice and its neighbours as channels -> labels of the centre slice.

    Encoder = DenseNet-161 (torchvision layout): 7x7 stride-2 conv (96) + BN + ReLU, 3x3 stride-2 max-pool,
    dense blocks of 6, 12, 36, 24 layers (growth 48, bottleneck 4 x 48 = 192), transitions BN-ReLU-1x1 conv
    (compression 0.5) + 2x2 average pool; widths after the blocks 384, 768, 2112, 2208. Decoder = five stages of
    x2 upsampling, element-wise sum with the same-scale encoder feature (the deepest, 2112 wide, through a 1x1
    conv to 2208), 3x3 conv + BN + ReLU with widths 768, 384, 96, 96, 64; dropout 0.3 in the last stage; 1x1
    conv to the classes. At the defaults it has 49.5 M parameters.

    Paper vs released code (``denseunet.py``, ``hybridnet.py``):

    - ``decoder_skips``: on (paper, ``train_2ddense.py``); the 2D network inside the released hybrid model was
      built without the sums (the author reports a small difference): ``decoder_skips=False``.
    - ``upsample_mode``: ``"nearest"`` (Keras ``UpSampling2D`` in the code); ``"linear"`` gives bilinear.
    - ``dropout``: 0.3 after the last decoder conv, before its BN (``train_2ddense.py``); the hybrid's copy has
      none (dropout has no parameters, so weights transfer either way).
    - Convolutions: Kaiming-normal initialisation (torchvision); Keras used Glorot/normal. BN epsilon 1e-5
      (torchvision) instead of 1.1e-5, and no separate Caffe ``Scale`` layer (BN's affine does that job).
    - The paper starts from ImageNet weights; we train from scratch by default. :meth:`load_encoder_weights`
      reads a local torchvision ``densenet161`` safetensors file.

    Args:
        in_channels: ``2 * slice_context + 1`` stacked slices (3: the slice and its two neighbours), times the
            number of image channels.
        out_channels: classes (3: background, liver, tumour); ``None`` for a feature extractor.
        init_features: stem width (96).
        growth_rate: channels per dense layer (48).
        block_config: dense layers per block (6, 12, 36, 24).
        bn_size: bottleneck factor (4: 1x1 conv to 4 x growth).
        compression: transition channel factor (0.5).
        decoder_widths: decoder stage widths (768, 384, 96, 96, 64); the last is the feature width HFF uses.
        decoder_skips: sum same-scale encoder features in the decoder.
        dropout: dropout of the last decoder stage (0.3).
        upsample_mode: ``"nearest"`` or ``"linear"``.

    Shapes:
        ``(B, in_channels, H, W) -> (B, out_channels, H, W)``, ``H, W`` divisible by 32 (``size_divisor``).
        :meth:`forward_features` returns ``(features (B, 64, H, W), logits)``.

    Example:
        >>> net = DenseUNet2D(init_features=8, growth_rate=4, block_config=(1, 1, 1, 1),
        ...                   decoder_widths=(16, 8, 8, 8, 8))
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int | None = 3,
        init_features: int = 96,
        growth_rate: int = 48,
        block_config: Sequence[int] = (6, 12, 36, 24),
        bn_size: int = 4,
        compression: float = 0.5,
        decoder_widths: Sequence[int] = (768, 384, 96, 96, 64),
        decoder_skips: bool = True,
        dropout: float = 0.3,
        upsample_mode: str = "nearest",
    ) -> None:
        super().__init__(
            2, in_channels, out_channels, init_features, growth_rate, block_config, decoder_widths, bn_size,
            compression, decoder_skips=decoder_skips, dropout=dropout, upsample_mode=upsample_mode,
        )

    def load_encoder_weights(self, path: str | Path) -> None:
        """Initialise the encoder from a local torchvision DenseNet safetensors file (see
        :func:`~medseg.networks.blocks.dense_unet.load_torchvision_densenet` for the key mapping)."""
        load_torchvision_densenet(self.encoder, path)
