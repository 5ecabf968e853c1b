"""The DenseUNet body shared by H-DenseUNet's 2D and 3D networks, and torchvision DenseNet weight loading.

``DenseUNetCore`` = :class:`~medseg.networks.blocks.dense.DenseEncoder` + :class:`DenseUNetDecoder` + an
optional 1x1 classifier. :class:`medseg.networks.dense_unet_2d.DenseUNet2D` and
:class:`medseg.networks.dense_unet_3d.DenseUNet3D` are this body with each paper's hyperparameters as
defaults.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from monai.networks.layers.factories import Conv
from torch import nn

from medseg.errors import MedsegModelError
from medseg.networks.blocks.dense import DenseEncoder, DenseUNetDecoder, Size
from medseg.networks.registry import WEIGHT_CONVERTERS


class DenseUNetCore(nn.Module):
    """DenseNet encoder, H-DenseUNet decoder, optional 1x1 classifier; any spatial dimensionality.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: input channels; classes (``None``: no classifier, ``forward`` returns the
            decoder features).
        init_features, growth_rate, block_config, bn_size, compression, stem_stride, pool_stride,
            transition_pool, dense_dropout: see :class:`~medseg.networks.blocks.dense.DenseEncoder`.
        decoder_widths: width of each decoder stage (``len(block_config) + 1`` entries).
        decoder_skips: add same-scale encoder features in the decoder (UNet connections).
        dropout: dropout in the last decoder stage (between its conv and BN).
        upsample_mode: ``"nearest"`` or ``"linear"``.

    Shapes:
        ``(B, in_channels, *S) -> (B, out_channels, *S)``; every ``S[a]`` must be divisible by
        ``size_divisor[a]``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int | None,
        init_features: int,
        growth_rate: int,
        block_config: Sequence[int],
        decoder_widths: Sequence[int],
        bn_size: int = 4,
        compression: float = 0.5,
        stem_stride: Size = 2,
        pool_stride: Size = 2,
        transition_pool: Size = 2,
        decoder_skips: bool = True,
        dropout: float = 0.0,
        dense_dropout: float = 0.0,
        upsample_mode: str = "nearest",
    ) -> None:
        super().__init__()
        if out_channels is not None and int(out_channels) < 1:
            raise ValueError(f"out_channels must be positive or None, got {out_channels}")
        if len(decoder_widths) != len(block_config) + 1:
            raise ValueError(
                f"decoder_widths needs {len(block_config) + 1} entries (one per downsampling step), "
                f"got {len(decoder_widths)}"
            )
        self.spatial_dims = spatial_dims
        self.encoder = DenseEncoder(
            spatial_dims, in_channels, init_features, growth_rate, block_config, bn_size, compression,
            stem_stride, pool_stride, transition_pool, dense_dropout,
        )
        self.decoder = DenseUNetDecoder(
            spatial_dims, self.encoder.out_channels, self.encoder.strides, decoder_widths, decoder_skips,
            dropout, upsample_mode,
        )
        self.feature_channels = self.decoder.out_channels
        conv = Conv[Conv.CONV, spatial_dims]
        self.head = conv(self.feature_channels, out_channels, kernel_size=1) if out_channels is not None else None
        self.size_divisor = tuple(math.prod(s[a] for s in self.encoder.strides) for a in range(spatial_dims))
        for m in self.modules():  # torchvision/MONAI DenseNet initialisation
            if isinstance(m, conv):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def check_size(self, x: torch.Tensor) -> None:
        """``ValueError`` unless ``x`` is ``(B, C, *S)`` with ``S`` divisible by ``size_divisor``."""
        spatial = tuple(x.shape[2:])
        if x.ndim != self.spatial_dims + 2 or any(s % d for s, d in zip(spatial, self.size_divisor, strict=True)):
            raise ValueError(
                f"input {tuple(x.shape)} must be (B, C, *spatial) with {self.spatial_dims} spatial sizes "
                f"divisible by {self.size_divisor}"
            )

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Final decoder features ``(B, feature_channels, *S)`` (before the classifier)."""
        self.check_size(x)
        return self.decoder(self.encoder(x))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(features, logits)``: decoder features ``(B, feature_channels, *S)`` and logits (``None`` without head)."""
        features = self.decode(x)
        return features, (self.head(features) if self.head is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, logits = self.forward_features(x)
        return logits if logits is not None else features


# torchvision dense-layer keys ``denseblockI.denselayerJ.norm1.weight`` become MONAI's
# ``denseblockI.denselayerJ.layers.norm1.weight``; checkpoints saved before torchvision 0.3 spell ``norm.1``.
_TV_LAYER = re.compile(r"^(features\.denseblock\d+\.denselayer\d+)\.(norm|relu|conv)\.?([12])\.(.+)$")


@WEIGHT_CONVERTERS.register("torchvision_densenet")
def torchvision_densenet_to_encoder(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ``DenseNet`` state dict to :class:`DenseEncoder` keys.

    Mapping: ``features.*`` keeps its name except inside dense layers, where ``.layers`` is inserted
    (``features.denseblock1.denselayer1.norm1.weight`` -> ``features.denseblock1.denselayer1.layers.norm1.weight``;
    the legacy ``norm.1`` spelling is accepted too); ``classifier.*`` is dropped. Anything else is an error.
    """
    mapped = {}
    for key, value in state_dict.items():
        if key.startswith("classifier."):
            continue
        if not key.startswith("features."):
            raise MedsegModelError(f"'{key}' is not a torchvision DenseNet key (expected features.* / classifier.*)")
        match = _TV_LAYER.match(key)
        mapped[f"{match[1]}.layers.{match[2]}{match[3]}.{match[4]}" if match else key] = value
    return mapped


def load_torchvision_densenet(encoder: DenseEncoder, path: str | Path) -> None:
    """Initialise ``encoder`` from a local torchvision-layout DenseNet ``.safetensors`` file (no download).

    For H-DenseUNet's 2D network this is torchvision's ``densenet161`` (ImageNet), saved with
    ``safetensors.torch.save_file(torchvision.models.densenet161(weights=...).state_dict(), path)``.
    Its ``conv0`` expects 3 input channels. Key mapping: :func:`torchvision_densenet_to_encoder`.

    Raises:
        MedsegModelError: the file is missing, or its keys/shapes do not fit the encoder.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise MedsegModelError(f"{path}: DenseNet weights file not found")
    mapped = torchvision_densenet_to_encoder(load_file(str(path)))
    own = encoder.state_dict()
    missing = [k for k in own if k not in mapped and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in mapped if k not in own]
    wrong = [k for k in own if k in mapped and mapped[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        problems = [f"{len(missing)} missing (e.g. {missing[:1]})"] if missing else []
        problems += [f"{len(unexpected)} unexpected (e.g. {unexpected[:1]})"] if unexpected else []
        if wrong:
            key = wrong[0]
            problems.append(f"shape mismatch at {key}: {tuple(mapped[key].shape)} vs {tuple(own[key].shape)}")
        raise MedsegModelError(f"{path}: does not fit this DenseNet encoder: " + "; ".join(problems))
    encoder.load_state_dict(mapped, strict=False)
