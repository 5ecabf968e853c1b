"""``vnet``: the V-Net variant of the semi-supervised segmentation literature (UA-MT, MC-Net, DSAIF).

Not Milletari's original (5x5x5 kernels, PReLU, residual stages: MONAI's ``VNet``), but the lighter
network the semi-supervised papers share and DSAIF trains (``model/VNet.py`` of GuGuLL123/DSAIF-SEMI,
re-implemented from its description): five levels of ``n_filters * 2**i`` channels, stages of 1, 2, 3,
3, 3 convolutions (3x3x3, norm, ReLU), strided 2x2x2 convolutions down, 2x2x2 transposed convolutions
up, *additive* skip connections, decoder stages of 3, 3, 2, 1 convolutions, and (``dropout``) channel
dropout of the bottleneck and of the last decoder features. DSAIF: ``n_filters=16``, batch norm,
``dropout=0.5``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Dropout
from torch import nn

from medseg.networks.registry import register_network

_NORMS = {"batch": "BATCH", "instance": "INSTANCE", "group": ("GROUP", {"num_groups": 16}), "none": None}


def _stage(dims: int, channels_in: int, channels: int, convs: int, norm: str) -> nn.Sequential:
    layers = [Convolution(dims, channels_in if i == 0 else channels, channels, kernel_size=3, act="RELU", norm=_NORMS[norm]) for i in range(convs)]
    return nn.Sequential(*layers)


def _resample(dims: int, channels_in: int, channels: int, norm: str, up: bool) -> Convolution:
    return Convolution(
        dims, channels_in, channels, strides=2, kernel_size=2, act="RELU", norm=_NORMS[norm], is_transposed=up, padding=0,
        output_padding=0 if up else None,
    )


@register_network(
    "vnet",
    spatial_dims=(2, 3),
    tiny_kwargs=lambda d: {"spatial_dims": d, "in_channels": 1, "out_channels": 3, "n_filters": 4, "stages": (1, 1, 1, 1, 1)},
    description="V-Net of the semi-supervised literature (UA-MT/DSAIF): additive skips, dropout 0.5",
)
class VNet(nn.Module):
    """Encoder-decoder with additive skips (see the module docstring).

    Args:
        spatial_dims: 2 or 3.
        in_channels / out_channels: input channels and classes (background included).
        n_filters: channels of the first level (DSAIF: 16); level ``i`` has ``n_filters * 2**i``.
        stages: convolutions per encoder level (length = number of levels, default ``(1, 2, 3, 3, 3)``);
            the decoder mirrors all but the bottleneck (``(3, 3, 2, 1)``).
        norm: ``batch`` (DSAIF), ``instance``, ``group`` (16 groups) or ``none``.
        dropout: channel dropout of the bottleneck and the last decoder features (DSAIF: 0.5); 0 = off.

    Shapes:
        ``(B, in_channels, *spatial)`` -> ``(B, out_channels, *spatial)``; spatial sizes divisible by
        ``2 ** (len(stages) - 1)``.

    Example:
        >>> net = VNet(3, 1, 2, n_filters=4).eval()
        >>> net(torch.zeros(1, 1, 16, 16, 16)).shape
        torch.Size([1, 2, 16, 16, 16])
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        n_filters: int = 16,
        stages: Sequence[int] = (1, 2, 3, 3, 3),
        norm: str = "batch",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {', '.join(_NORMS)}, got {norm!r}")
        if len(stages) < 2 or min(stages) < 1 or n_filters < 1:
            raise ValueError(f"need at least two levels of >= 1 convolution and n_filters >= 1, got {stages}, {n_filters}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if norm == "group" and n_filters % 16:
            raise ValueError("norm 'group' (16 groups) needs n_filters divisible by 16")
        widths = [n_filters * 2**i for i in range(len(stages))]
        self.levels = len(stages)
        self.encoder = nn.ModuleList()
        self.down = nn.ModuleList()
        for i, convs in enumerate(stages):
            self.encoder.append(_stage(spatial_dims, in_channels if i == 0 else widths[i], widths[i], convs, norm))
            if i < len(stages) - 1:
                self.down.append(_resample(spatial_dims, widths[i], widths[i + 1], norm, up=False))
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in reversed(range(len(stages) - 1)):
            self.up.append(_resample(spatial_dims, widths[i + 1], widths[i], norm, up=True))
            self.decoder.append(_stage(spatial_dims, widths[i], widths[i], stages[i], norm))
        self.dropout = Dropout[Dropout.DROPOUT, spatial_dims](p=dropout) if dropout > 0 else nn.Identity()
        self.head = Convolution(spatial_dims, widths[0], out_channels, kernel_size=1, conv_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, stage in enumerate(self.encoder):
            x = stage(x)
            if i < self.levels - 1:
                skips.append(x)
                x = self.down[i](x)
        x = self.dropout(x)
        for up, stage, skip in zip(self.up, self.decoder, reversed(skips)):
            x = stage(up(x) + skip)
        return self.head(self.dropout(x))
