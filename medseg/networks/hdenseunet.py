"""H-DenseUNet (Li et al., IEEE TMI 2018): 2D DenseUNet on slice stacks + 3D DenseUNet + hybrid feature fusion."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from medseg.networks.dense_unet_2d import DenseUNet2D
from medseg.networks.dense_unet_3d import DenseUNet3D
from medseg.networks.registry import register_network

INPUT_2D_MODES = ("probabilities", "scaled_logits")


def stack_slices(volume: torch.Tensor, context: int = 1) -> torch.Tensor:
    """Every slice along the last axis with its ``context`` neighbours on each side, as a 2D batch.

    Slices beyond the chunk's ends are replicated edge slices (the paper's and code's choice).

    Shapes: ``(B, C, I, J, K) -> (B * K, C * (2 * context + 1), I, J)``; batch index ``b * K + k``, channels
    ordered ``(c, k - context), ..., (c, k + context)``.

    Example:
        >>> v = torch.arange(3.0).view(1, 1, 1, 1, 3)
        >>> stack_slices(v)[:, :, 0, 0].tolist()
        [[0.0, 0.0, 1.0], [0.0, 1.0, 2.0], [1.0, 2.0, 2.0]]
    """
    if volume.ndim != 5:
        raise ValueError(f"expected (B, C, I, J, K), got {tuple(volume.shape)}")
    if context < 0:
        raise ValueError(f"context must be >= 0, got {context}")
    b, c, i, j, k = volume.shape
    offsets = torch.arange(-context, context + 1, device=volume.device)
    index = (torch.arange(k, device=volume.device)[:, None] + offsets).clamp_(0, k - 1)  # (K, 2c+1)
    stacks = volume[..., index]  # (B, C, I, J, K, 2c+1)
    return stacks.permute(0, 4, 1, 5, 2, 3).reshape(b * k, c * (2 * context + 1), i, j)


def unstack_slices(batch: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Inverse of the batching in :func:`stack_slices`: ``(B * K, C, I, J) -> (B, C, I, J, K)``."""
    bk, c, i, j = batch.shape
    if bk % batch_size:
        raise ValueError(f"{bk} slices do not split into {batch_size} volumes")
    return batch.reshape(batch_size, bk // batch_size, c, i, j).permute(0, 2, 3, 4, 1)


def slab_to_stack(slab: torch.Tensor) -> torch.Tensor:
    """A slab of ``2 * context + 1`` slices as one 2D sample, the input of the 2D DenseUNet for its centre slice.

    For stage 1 (training ``dense_unet_2d`` alone) from 3D patches ``(I, J, 3)``: the label is the centre slice,
    ``label[..., label.shape[-1] // 2]``. Channel order is that of :func:`stack_slices`.

    Shapes: ``(B, C, I, J, 2 * context + 1) -> (B, C * (2 * context + 1), I, J)``.
    """
    if slab.ndim != 5 or slab.shape[-1] % 2 == 0:
        raise ValueError(f"expected (B, C, I, J, odd number of slices), got {tuple(slab.shape)}")
    b, c, i, j, k = slab.shape
    return slab.permute(0, 1, 4, 2, 3).reshape(b, c * k, i, j)


class HybridFeatureFusion(nn.Module):
    """HFF layer: ``3x3x3 conv(f3d + f2d) -> dropout -> BN -> ReLU -> 1x1x1 conv`` to class logits.

    Shapes: two ``(B, in_channels, I, J, K)`` feature maps -> ``(B, out_channels, I, J, K)``.

    Example:
        >>> hff = HybridFeatureFusion(8, 8, 3)
        >>> hff(torch.zeros(1, 8, 4, 4, 4), torch.zeros(1, 8, 4, 4, 4)).shape
        torch.Size([1, 3, 4, 4, 4])
    """

    def __init__(self, in_channels: int = 64, channels: int = 64, out_channels: int = 3, dropout: float = 0.3) -> None:
        super().__init__()
        if min(in_channels, channels, out_channels) < 1:
            raise ValueError("HFF channel counts must be positive")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.conv = nn.Conv3d(in_channels, channels, kernel_size=3, padding=1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.norm = nn.BatchNorm3d(channels)
        self.act = nn.ReLU(inplace=True)
        self.classifier = nn.Conv3d(channels, out_channels, kernel_size=1)
        nn.init.kaiming_normal_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, features_3d: torch.Tensor, features_2d: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.act(self.norm(self.dropout(self.conv(features_3d + features_2d)))))


@register_network(
    "hdenseunet",
    spatial_dims=(3,),
    tiny_kwargs=lambda d: {
        "in_channels": 1, "out_channels": 3, "hff_channels": 8,
        "net2d": {"init_features": 8, "growth_rate": 4, "block_config": (1, 1, 1, 1), "bn_size": 2,
                  "decoder_widths": (16, 8, 8, 8, 8)},
        "net3d": {"init_features": 8, "growth_rate": 4, "block_config": (1, 1, 1, 1), "bn_size": 2,
                  "decoder_widths": (16, 8, 8, 8, 8)},
    },
    example_inputs=lambda d, kw: (torch.randn(1, kw["in_channels"], 32, 32, 8),),
    description="H-DenseUNet: 2D DenseUNet on slice stacks + 3D DenseUNet + hybrid feature fusion (liver/tumour CT)",
)
class HDenseUNet(nn.Module):
    """Hybrid densely connected UNet for a CT chunk of ``K`` axial slices.

    Axes: the input is ``(B, C, I, J, K)`` in medseg's RAS-canonical layout, so axial slices lie along the LAST
    axis ``K``. Every slice with its ``slice_context`` neighbours (edge slices replicated) becomes a 2D sample:
    the 2D DenseUNet sees ``(B * K, C * (2 * slice_context + 1), I, J)``. Its 64-channel features and logits
    are restacked to ``(B, 64, I, J, K)`` / ``(B, classes, I, J, K)``; the 3D DenseUNet runs on
    ``[image, 2D probabilities]`` (``(B, C + classes, I, J, K)``, pooling in-plane = ``I, J``); HFF sums the
    3D decoder features and the restacked 2D features, then 3x3x3 conv (64), dropout 0.3, BN, ReLU, 1x1x1 conv.

    Outputs: in eval mode (or with ``return_2d_logits=False``) the HFF logits ``(B, classes, I, J, K)``; in
    training mode the list ``[hff_logits, logits_2d]``, both ``(B, classes, I, J, K)``, which
    :class:`medseg.losses.weighted_ce.HDenseUNetLoss` turns into ``L(HFF) + lambda * L(2D)``.

    Training stages (code ``train_2ddense.py`` / ``train_hybrid.py``): (1) train
    :class:`~medseg.networks.dense_unet_2d.DenseUNet2D` alone and load it with :meth:`load_2d_weights`;
    (2) ``freeze_2d=True``: the 2D part runs without gradients in eval mode (its BN statistics and dropout
    off) and only the 3D network + HFF learn; (3) ``freeze_2d_batchnorm=True``: end-to-end, the 2D network's
    BN layers stay in inference mode (running statistics neither used from the batch nor updated). The flags
    change no parameter, so one set of weights serves every stage.

    Paper vs released code (``hybridnet.py``, ``denseunet3d.py``):

    - ``input_2d``: ``"probabilities"`` (paper: softmax maps) or ``"scaled_logits"`` (code: logits x
      ``logit_scale`` = 250).
    - ``hff_dropout``: 0.3 (paper; code end-to-end); the code's stage-2 model used 0.1.
    - chunk length ``K`` (the patch size along z): paper 12, code 8; any multiple of 4 works at the defaults.
    - ``net2d["decoder_skips"]``: the released hybrid's 2D network had no UNet sums; default on (paper).

    Args:
        in_channels: image channels (1 for CT).
        out_channels: classes (3).
        slice_context: neighbours on each side in a 2D stack (1: three slices).
        input_2d: what of the 2D output is fed to the 3D network.
        logit_scale: factor on the 2D logits for ``input_2d="scaled_logits"``.
        hff_channels: width of the HFF convolution (64).
        hff_dropout: HFF dropout (0.3).
        freeze_2d: stage 2 (2D frozen, evaluated under ``torch.no_grad``).
        freeze_2d_batchnorm: stage 3 (2D BN in inference mode while training).
        return_2d_logits: in training mode also return the restacked 2D logits (for the lambda x 2D loss).
        net2d, net3d: extra keyword arguments of ``DenseUNet2D`` / ``DenseUNet3D`` (their defaults are the
            paper's); channel counts are set here. Both decoders must end at the same width.

    Example:
        >>> tiny = {"init_features": 8, "growth_rate": 4, "block_config": (1, 1, 1, 1),
        ...         "decoder_widths": (16, 8, 8, 8, 8)}
        >>> net = HDenseUNet(hff_channels=8, net2d=tiny, net3d=tiny).eval()
        >>> net(torch.zeros(1, 1, 32, 32, 8)).shape
        torch.Size([1, 3, 32, 32, 8])
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 3,
        slice_context: int = 1,
        input_2d: str = "probabilities",
        logit_scale: float = 250.0,
        hff_channels: int = 64,
        hff_dropout: float = 0.3,
        freeze_2d: bool = False,
        freeze_2d_batchnorm: bool = False,
        return_2d_logits: bool = True,
        net2d: Mapping[str, Any] | None = None,
        net3d: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 2:
            raise ValueError(f"need in_channels >= 1 and out_channels >= 2, got {in_channels}, {out_channels}")
        if slice_context < 0:
            raise ValueError(f"slice_context must be >= 0, got {slice_context}")
        if input_2d not in INPUT_2D_MODES:
            raise ValueError(f"input_2d must be one of {INPUT_2D_MODES}, got {input_2d!r}")
        for name, extra in (("net2d", net2d), ("net3d", net3d)):
            clash = {"in_channels", "out_channels"} & set(extra or {})
            if clash:
                raise ValueError(f"{name} must not set {sorted(clash)}: HDenseUNet derives them")
        self.slice_context = slice_context
        self.input_2d = input_2d
        self.logit_scale = float(logit_scale)
        self.freeze_2d = freeze_2d
        self.freeze_2d_batchnorm = freeze_2d_batchnorm
        self.return_2d_logits = return_2d_logits
        self.net2d = DenseUNet2D(in_channels * (2 * slice_context + 1), out_channels, **dict(net2d or {}))
        self.net3d = DenseUNet3D(in_channels + out_channels, None, **dict(net3d or {}))
        if self.net2d.feature_channels != self.net3d.feature_channels:
            raise ValueError(
                f"2D and 3D decoders must end at the same width for HFF, got {self.net2d.feature_channels} "
                f"and {self.net3d.feature_channels}"
            )
        self.hff = HybridFeatureFusion(self.net3d.feature_channels, hff_channels, out_channels, hff_dropout)
        if freeze_2d:
            self.net2d.requires_grad_(False)
        self.size_divisor = tuple(
            max(a, b) for a, b in zip((*self.net2d.size_divisor, 1), self.net3d.size_divisor, strict=True)
        )
        self.train(True)

    def train(self, mode: bool = True) -> HDenseUNet:
        super().train(mode)
        if mode and self.freeze_2d:
            self.net2d.eval()
        elif mode and self.freeze_2d_batchnorm:
            for module in self.net2d.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def forward_2d(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The 2D branch restacked along z: ``(features (B, 64, I, J, K), logits (B, classes, I, J, K))``."""
        with torch.no_grad() if self.freeze_2d else nullcontext():
            features, logits = self.net2d.forward_features(stack_slices(x, self.slice_context))
        return unstack_slices(features, x.shape[0]), unstack_slices(logits, x.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if x.ndim != 5 or any(s % d for s, d in zip(x.shape[2:], self.size_divisor, strict=True)):
            raise ValueError(
                f"input {tuple(x.shape)} must be (B, C, I, J, K) with I, J, K divisible by {self.size_divisor}"
            )
        features_2d, logits_2d = self.forward_2d(x)
        guide = logits_2d.softmax(1) if self.input_2d == "probabilities" else logits_2d * self.logit_scale
        features_3d = self.net3d.decode(torch.cat([x, guide], dim=1))
        logits = self.hff(features_3d, features_2d)
        if self.training and self.return_2d_logits:
            return [logits, logits_2d]
        return logits

    def load_2d_weights(self, source: str | Path | Mapping[str, torch.Tensor]) -> None:
        """Load a trained :class:`DenseUNet2D` (stage 1): a state dict or a ``.safetensors`` file, strict."""
        if not isinstance(source, Mapping):
            from safetensors.torch import load_file

            source = load_file(str(source))
        self.net2d.load_state_dict(source)
