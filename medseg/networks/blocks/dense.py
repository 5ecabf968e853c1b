"""DenseNet building blocks for any spatial dimensionality, and the DenseUNet encoder and decoder.

The dense layer (BN-ReLU-1x1 conv to ``bn_size * growth``-BN-ReLU-3x3 conv to ``growth``, output concatenated
with the input), the dense block and the transition (BN-ReLU-1x1 conv-average pool) are built exactly as MONAI's
``monai.networks.nets.densenet`` builds its own, with the same module names, so the state-dict layout is MONAI's
(torchvision's DenseNet layout plus a ``.layers`` level inside each dense layer). We write these few lines
because MONAI keeps those classes private (``_DenseLayer``, ...), and because the transition needs a per-axis
pooling window (H-DenseUNet's 3D network pools in-plane only); ``tests/networks/test_dense_blocks.py`` checks
that ours equal MONAI's, weights and outputs.

Used by :mod:`medseg.networks.dense_unet_2d`, :mod:`medseg.networks.dense_unet_3d` and
:mod:`medseg.networks.hdenseunet`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv, Dropout, Norm, Pool
from torch import nn

Size = int | Sequence[int]


def as_tuple(value: Size, dims: int, name: str) -> tuple[int, ...]:
    """``value`` as one positive int per spatial axis (``ValueError`` otherwise)."""
    values = (int(value),) * dims if isinstance(value, int) else tuple(int(v) for v in value)
    if len(values) != dims or any(v < 1 for v in values):
        raise ValueError(f"{name} must be a positive int or {dims} positive ints, got {value!r}")
    return values


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (``bn_size * growth_rate``)-BN-ReLU-3x3 conv (``growth_rate``) [-dropout], concatenated
    with its input. Shapes: ``(B, in_channels, *S) -> (B, in_channels + growth_rate, *S)``."""

    def __init__(self, spatial_dims: int, in_channels: int, growth_rate: int, bn_size: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        conv, norm = Conv[Conv.CONV, spatial_dims], Norm[Norm.BATCH, spatial_dims]
        middle = bn_size * growth_rate
        self.layers = nn.Sequential(
            OrderedDict(
                norm1=norm(in_channels),
                relu1=nn.ReLU(inplace=True),
                conv1=conv(in_channels, middle, kernel_size=1, bias=False),
                norm2=norm(middle),
                relu2=nn.ReLU(inplace=True),
                conv2=conv(middle, growth_rate, kernel_size=3, padding=1, bias=False),
            )
        )
        if dropout > 0:
            self.layers.add_module("dropout", Dropout[Dropout.DROPOUT, spatial_dims](dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.layers(x)], 1)


def dense_layer(
    spatial_dims: int, in_channels: int, growth_rate: int, bn_size: int = 4, dropout: float = 0.0
) -> nn.Module:
    """BN-ReLU-1x1 conv (``bn_size * growth_rate``)-BN-ReLU-3x3 conv (``growth_rate``), concatenated with its input.

    Shapes: ``(B, in_channels, *S) -> (B, in_channels + growth_rate, *S)``.

    Example:
        >>> dense_layer(2, 8, 4)(torch.zeros(1, 8, 16, 16)).shape
        torch.Size([1, 12, 16, 16])
    """
    return DenseLayer(spatial_dims, in_channels, growth_rate, bn_size, dropout)


def dense_block(
    spatial_dims: int, in_channels: int, layers: int, growth_rate: int, bn_size: int = 4, dropout: float = 0.0
) -> nn.Sequential:
    """``layers`` dense layers; each sees the concatenation of the block input and all earlier layers' outputs.

    Shapes: ``(B, in_channels, *S) -> (B, in_channels + layers * growth_rate, *S)``.

    Example:
        >>> dense_block(3, 8, 2, 4)(torch.zeros(1, 8, 4, 4, 4)).shape
        torch.Size([1, 16, 4, 4, 4])
    """
    return nn.Sequential(
        OrderedDict(
            (f"denselayer{i + 1}", DenseLayer(spatial_dims, in_channels + i * growth_rate, growth_rate, bn_size, dropout))
            for i in range(layers)
        )
    )


def transition(spatial_dims: int, in_channels: int, out_channels: int, pool: Size = 2) -> nn.Sequential:
    """BN-ReLU-1x1 conv-average pool with window = stride = ``pool`` (per axis, e.g. ``(2, 2, 1)``).

    Shapes: ``(B, in_channels, *S) -> (B, out_channels, *(S // pool))``.

    Example:
        >>> transition(3, 8, 4, pool=(2, 2, 1))(torch.zeros(1, 8, 8, 8, 4)).shape
        torch.Size([1, 4, 4, 4, 4])
    """
    window = as_tuple(pool, spatial_dims, "pool")
    return nn.Sequential(
        OrderedDict(
            norm=Norm[Norm.BATCH, spatial_dims](in_channels),
            relu=nn.ReLU(inplace=True),
            conv=Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size=1, bias=False),
            pool=Pool[Pool.AVG, spatial_dims](kernel_size=window, stride=window),
        )
    )


class DenseEncoder(nn.Module):
    """DenseNet feature extractor returning the features a DenseUNet decoder sums with.

    Layout (torchvision's ``DenseNet.features`` names): ``conv0`` (7^d conv, stride ``stem_stride``),
    ``norm0``, ``relu0``, ``pool0`` (3^d max-pool, stride ``pool_stride``), ``denseblock1``, ``transition1``,
    ..., ``denseblockN``, ``norm5``, ``relu5``. Transitions compress channels to ``int(c * compression)``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        init_features: width of the stem convolution (DenseNet-161: 96).
        growth_rate: channels each dense layer adds (DenseNet-161: 48).
        block_config: dense layers per block (DenseNet-161: 6, 12, 36, 24).
        bn_size: bottleneck width factor (1x1 conv to ``bn_size * growth_rate``).
        compression: channel factor of the transitions (0.5).
        stem_stride: stride of the stem convolution per axis.
        pool_stride: stride of the stem max-pool per axis.
        transition_pool: pooling window (= stride) of every transition, per axis.
        dropout: dropout after each dense layer (0: none).

    Shapes:
        ``forward(x)`` with ``x`` ``(B, in_channels, *S)`` returns ``N + 1`` tensors: the stem output (after
        ReLU, before pooling), the raw outputs of blocks 1..N-1, and the last block after BN + ReLU; their
        widths are ``out_channels``.

    Example:
        >>> enc = DenseEncoder(2, 3, 8, 4, (1, 1), bn_size=2)
        >>> [f.shape[1] for f in enc(torch.zeros(1, 3, 32, 32))]
        [8, 12, 10]
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        init_features: int,
        growth_rate: int,
        block_config: Sequence[int],
        bn_size: int = 4,
        compression: float = 0.5,
        stem_stride: Size = 2,
        pool_stride: Size = 2,
        transition_pool: Size = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        for name, value in (("in_channels", in_channels), ("init_features", init_features),
                            ("growth_rate", growth_rate), ("bn_size", bn_size)):
            if int(value) < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if len(block_config) < 1 or any(int(n) < 1 for n in block_config):
            raise ValueError(f"block_config needs at least one block of at least one layer, got {block_config!r}")
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"compression must be in (0, 1], got {compression}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.stem_stride = as_tuple(stem_stride, spatial_dims, "stem_stride")
        self.pool_stride = as_tuple(pool_stride, spatial_dims, "pool_stride")
        self.transition_pool = as_tuple(transition_pool, spatial_dims, "transition_pool")

        conv = Conv[Conv.CONV, spatial_dims]
        norm = Norm[Norm.BATCH, spatial_dims]
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv0=conv(in_channels, init_features, kernel_size=7, stride=self.stem_stride, padding=3, bias=False),
            norm0=norm(init_features),
            relu0=nn.ReLU(inplace=True),
            pool0=Pool[Pool.MAX, spatial_dims](kernel_size=3, stride=self.pool_stride, padding=1),
        )
        channels = init_features
        self.out_channels: list[int] = [init_features]
        self._skip_names = {"relu0", "relu5"}
        for i, num_layers in enumerate(block_config, start=1):
            layers[f"denseblock{i}"] = dense_block(
                spatial_dims, channels, int(num_layers), growth_rate, bn_size, dropout
            )
            channels += int(num_layers) * growth_rate
            if i < len(block_config):
                self._skip_names.add(f"denseblock{i}")
                self.out_channels.append(channels)
                layers[f"transition{i}"] = transition(
                    spatial_dims, channels, int(channels * compression), self.transition_pool
                )
                channels = int(channels * compression)
        layers["norm5"] = norm(channels)
        layers["relu5"] = nn.ReLU(inplace=True)
        self.out_channels.append(channels)
        self.features = nn.Sequential(layers)
        self.num_blocks = len(block_config)

    @property
    def strides(self) -> list[tuple[int, ...]]:
        """Downsampling factor of each step, input to bottom: stem conv, stem pool, transitions."""
        return [self.stem_stride, self.pool_stride] + [self.transition_pool] * (self.num_blocks - 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for name, module in self.features.named_children():
            x = module(x)
            if name in self._skip_names:
                skips.append(x)
        return skips


class DecoderStage(nn.Module):
    """Upsample, add the (optionally 1x1-projected) skip, then 3^d conv (+ dropout) + BN + ReLU.

    Dropout (element-wise) sits between the convolution and the batch norm, as in the released H-DenseUNet code.
    Shapes: ``(B, in_channels, *S)`` and skip ``(B, skip_channels, *(S * scale))`` ->
    ``(B, out_channels, *(S * scale))``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        scale: Sequence[int],
        skip_channels: int | None = None,
        project_skip: bool = False,
        dropout: float = 0.0,
        upsample_mode: str = "nearest",
    ) -> None:
        super().__init__()
        mode = {"nearest": "nearest", "linear": ("bilinear", "trilinear")[spatial_dims - 2]}[upsample_mode]
        self.upsample = nn.Upsample(scale_factor=tuple(float(s) for s in scale), mode=mode)
        conv = Conv[Conv.CONV, spatial_dims]
        self.has_skip = skip_channels is not None
        if skip_channels is not None and skip_channels != in_channels and not project_skip:
            raise ValueError(
                f"skip of width {skip_channels} cannot be added to {in_channels} channels without projection"
            )
        self.project = conv(skip_channels, in_channels, kernel_size=1) if self.has_skip and project_skip else None
        self.conv = conv(in_channels, out_channels, kernel_size=3, padding=1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()  # element-wise, like Keras Dropout
        self.norm = Norm[Norm.BATCH, spatial_dims](out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.upsample(x)
        if self.has_skip:
            if skip is None:
                raise ValueError("this decoder stage was built with a skip connection; pass the skip tensor")
            x = x + (self.project(skip) if self.project is not None else skip)
        return self.act(self.norm(self.dropout(self.conv(x))))


class DenseUNetDecoder(nn.Module):
    """H-DenseUNet decoder: one x2 upsampling stage per encoder downsampling, widths ``widths``.

    Stage ``i`` undoes the encoder's downsampling steps in reverse order (so its scale may be in-plane only)
    and, with ``skips``, adds the encoder feature of the same scale: the deepest skip always through a 1x1
    conv (the paper's ``line0``), the others directly when the widths agree and through a 1x1 conv when they
    do not. The last stage (input resolution) has no skip and carries the dropout.

    Args:
        spatial_dims: 2 or 3.
        encoder_channels: ``DenseEncoder.out_channels`` (N + 1 entries).
        strides: ``DenseEncoder.strides`` (N + 1 entries, input to bottom).
        widths: output width of each stage (N + 1 entries).
        skips: add the encoder features (UNet connections).
        dropout: dropout of the last stage.
        upsample_mode: ``"nearest"`` or ``"linear"`` (bi/trilinear).

    Shapes: ``forward(features)`` with the encoder's list returns ``(B, widths[-1], *S_input)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        encoder_channels: Sequence[int],
        strides: Sequence[Sequence[int]],
        widths: Sequence[int],
        skips: bool = True,
        dropout: float = 0.0,
        upsample_mode: str = "nearest",
    ) -> None:
        super().__init__()
        stages = len(encoder_channels)
        if len(widths) != stages or len(strides) != stages:
            raise ValueError(f"decoder needs {stages} widths (one per downsampling step), got {len(widths)}")
        if any(int(w) < 1 for w in widths):
            raise ValueError(f"decoder widths must be positive, got {tuple(widths)}")
        if upsample_mode not in ("nearest", "linear"):
            raise ValueError(f"upsample_mode must be 'nearest' or 'linear', got {upsample_mode!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.skips = skips
        blocks = []
        channels = encoder_channels[-1]
        for i in range(stages):
            skip = encoder_channels[stages - 2 - i] if skips and i < stages - 1 else None
            blocks.append(
                DecoderStage(
                    spatial_dims,
                    channels,
                    int(widths[i]),
                    strides[stages - 1 - i],
                    skip_channels=skip,
                    project_skip=skip is not None and (i == 0 or skip != channels),
                    dropout=dropout if i == stages - 1 else 0.0,
                    upsample_mode=upsample_mode,
                )
            )
            channels = int(widths[i])
        self.stages = nn.ModuleList(blocks)
        self.out_channels = channels

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        n = len(self.stages)
        for i, stage in enumerate(self.stages):
            x = stage(x, features[n - 2 - i] if self.skips and i < n - 1 else None)
        return x
