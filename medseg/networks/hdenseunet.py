"""H-DenseUNet (Li et al., IEEE TMI 2018): 2D DenseUNet on slice stacks + 3D DenseUNet + hybrid feature fusion."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from medseg.networks.dense_unet_2d import DenseUNet2D
from medseg.networks.dense_unet_3d import DenseUNet3D
from medseg.networks.registry import register_network

GUIDANCE_MODES = ("paper", "code")
FREEZE_BATCHNORM_MODES = ("none", "2d", "code")
#: legacy ``input_2d`` values -> ``guidance`` (with the CT unscaled, as before the pairing existed)
_LEGACY_INPUT_2D = {"probabilities": "paper", "scaled_logits": "code"}


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
        if self.conv.bias is not None:
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
    ``[image x image_scale, 2D guidance]`` (``(B, C + classes, I, J, K)``, pooling in-plane = ``I, J``); HFF sums
    the 3D decoder features and the restacked 2D features, then 3x3x3 conv (64), dropout 0.3, BN, ReLU, 1x1x1.

    Outputs: in eval mode (or with ``return_2d_logits=False``) the HFF logits ``(B, classes, I, J, K)``; in
    training mode the list ``[hff_logits, logits_2d]``, both ``(B, classes, I, J, K)``, which
    :class:`medseg.losses.weighted_ce.HDenseUNetLoss` turns into ``L(HFF) + lambda * L(2D)``.

    Training stages (code ``train_2ddense.py`` / ``train_hybrid.py``): (1) train
    :class:`~medseg.networks.dense_unet_2d.DenseUNet2D` alone and load it with :meth:`load_2d_weights`;
    (2) ``freeze_2d=True`` (or the pipeline's ``train.freeze: [net2d]``): the 2D part runs without gradients
    in eval mode and only the 3D network + HFF learn; (3) end to end with ``freeze_batchnorm="code"``. The
    flags change no parameter, so one set of weights serves every stage.

    Flags where the paper and the released code (``hybridnet.py``, ``denseunet3d.py``) differ:

    - ``guidance`` (the paper's default): what enters the 3D network beside the CT. ``"paper"``: the 2D
      softmax probabilities (0..1) next to the CT x ``image_scale`` (default 1/250: the code's HU - 48 CT,
      -248..202, to about -1..0.8, the probabilities' range). ``"code"``: the 2D logits x ``logit_scale``
      (250) next to the CT unscaled (x 1). Either way guidance and CT reach the 3D stem at comparable
      magnitudes; the paper's probabilities next to the unscaled CT (the old ``input_2d="probabilities"``)
      made the guidance about 0.6 % of the stem's response.
    - ``freeze_batchnorm`` (stage 3): ``"none"`` every BN learns from batch statistics; ``"2d"`` the 2D
      network's BN in inference mode (running statistics neither used from the batch nor updated);
      ``"code"`` (the code's end-to-end model): ``"2d"``, plus the 2D decoder's BN affine parameters fixed
      (Keras ``trainable=False`` with no ``Scale`` after them) and the BN of the 3D dense layers and
      transitions in inference mode (their affine, the code's ``Scale`` layers, still learns); the 3D stem,
      final encoder BN, 3D decoder and HFF BN learn from batches. ``freeze_2d_batchnorm=True`` is the legacy
      spelling of ``"2d"``.
    - ``net2d["dropout"]``: the 2D network inside the code's hybrid has no dropout: 0 here (code default;
      ``train_2ddense.py``'s 2D network, stage 1, has 0.3). Dropout has no parameters: weights transfer.
    - ``hff_dropout``: 0.3 (paper; code end-to-end); the code's stage-2 model used 0.1.
    - chunk length ``K`` (the patch size along z): paper 12, code 8; any multiple of 4 works at the defaults.
    - inference (``inference.window`` of the pipeline / package, default ``auto`` = ``chunks`` for this network:
      the code's ``test.py`` / ``lib/funcs.py: predict_tumor_inwindow``): windows exactly one training chunk
      deep (``K``), every ``K // 4`` slices along z (``inference.chunk_stride``), the last flush with the
      volume's end, no padding (zero padding only where the volume is shallower than a chunk); each chunk's
      first and last slice unscored (``inference.chunk_edge: 1``; the volume's own end slices are then
      background); the chunks' softmax averaged with equal weight (Gaussian in-plane, where the code feeds
      whole slices). Every interior slice is thus seen as training saw it, inside a chunk and away from its
      ends. ``window: gaussian`` gives medseg's Gaussian sliding window (logits averaged) instead.
    - ``net2d["decoder_skips"]``: the released hybrid's 2D network had no UNet sums; default on (paper).

    Args:
        in_channels: image channels (1 for CT).
        out_channels: classes (3).
        slice_context: neighbours on each side in a 2D stack (1: three slices).
        guidance: ``"paper"`` or ``"code"`` (see above).
        logit_scale: factor on the 2D logits for ``guidance="code"`` (250).
        image_scale: factor on the CT entering the 3D network; ``None``: 1/250 with ``"paper"``, 1 with
            ``"code"`` (set 1 if the preprocessing already scales CT to about unit range).
        hff_channels: width of the HFF convolution (64).
        hff_dropout: HFF dropout (0.3).
        freeze_2d: stage 2 (2D frozen, evaluated under ``torch.no_grad``).
        freeze_batchnorm: ``"none"``, ``"2d"`` or ``"code"`` (see above).
        return_2d_logits: in training mode also return the restacked 2D logits (for the lambda x 2D loss).
        net2d, net3d: extra keyword arguments of ``DenseUNet2D`` / ``DenseUNet3D`` (their defaults are the
            paper's, except the 2D dropout: 0); channel counts are set here. Both decoders must end at the
            same width.
        input_2d, freeze_2d_batchnorm: legacy spellings (``"probabilities"`` = ``guidance="paper"`` with
            ``image_scale=1``, ``"scaled_logits"`` = ``"code"``; ``True`` = ``freeze_batchnorm="2d"``), kept so
            that older model packages load with the behaviour they were trained with.

    Example:
        >>> tiny = {"init_features": 8, "growth_rate": 4, "block_config": (1, 1, 1, 1),
        ...         "decoder_widths": (16, 8, 8, 8, 8)}
        >>> net = HDenseUNet(hff_channels=8, net2d=tiny, net3d=tiny).eval()
        >>> net(torch.zeros(1, 1, 32, 32, 8)).shape
        torch.Size([1, 3, 32, 32, 8])
    """

    #: the window scheme ``inference.window: auto`` picks for this network (see :mod:`medseg.inference.stitch`)
    inference_window: ClassVar[str] = "chunks"

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 3,
        slice_context: int = 1,
        guidance: str = "paper",
        logit_scale: float = 250.0,
        image_scale: float | None = None,
        hff_channels: int = 64,
        hff_dropout: float = 0.3,
        freeze_2d: bool = False,
        freeze_batchnorm: str = "none",
        return_2d_logits: bool = True,
        net2d: Mapping[str, Any] | None = None,
        net3d: Mapping[str, Any] | None = None,
        input_2d: str | None = None,
        freeze_2d_batchnorm: bool = False,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 2:
            raise ValueError(f"need in_channels >= 1 and out_channels >= 2, got {in_channels}, {out_channels}")
        if slice_context < 0:
            raise ValueError(f"slice_context must be >= 0, got {slice_context}")
        if input_2d is not None:
            if input_2d not in _LEGACY_INPUT_2D:
                raise ValueError(f"input_2d must be one of {tuple(_LEGACY_INPUT_2D)}, got {input_2d!r}")
            guidance = _LEGACY_INPUT_2D[input_2d]
            image_scale = 1.0 if image_scale is None else image_scale
        if guidance not in GUIDANCE_MODES:
            raise ValueError(f"guidance must be one of {GUIDANCE_MODES}, got {guidance!r}")
        if freeze_2d_batchnorm and freeze_batchnorm == "none":
            freeze_batchnorm = "2d"
        if freeze_batchnorm not in FREEZE_BATCHNORM_MODES:
            raise ValueError(f"freeze_batchnorm must be one of {FREEZE_BATCHNORM_MODES}, got {freeze_batchnorm!r}")
        for name, extra in (("net2d", net2d), ("net3d", net3d)):
            clash = {"in_channels", "out_channels"} & set(extra or {})
            if clash:
                raise ValueError(f"{name} must not set {sorted(clash)}: HDenseUNet derives them")
        self.slice_context = slice_context
        self.guidance = guidance
        self.logit_scale = float(logit_scale)
        self.image_scale = float(image_scale if image_scale is not None else (1 / 250 if guidance == "paper" else 1.0))
        self.freeze_2d = freeze_2d
        self.freeze_batchnorm = freeze_batchnorm
        self.return_2d_logits = return_2d_logits
        self.net2d = DenseUNet2D(in_channels * (2 * slice_context + 1), out_channels, **{"dropout": 0.0, **dict(net2d or {})})
        self.net3d = DenseUNet3D(in_channels + out_channels, None, **dict(net3d or {}))
        if self.net2d.feature_channels != self.net3d.feature_channels:
            raise ValueError(
                f"2D and 3D decoders must end at the same width for HFF, got {self.net2d.feature_channels} "
                f"and {self.net3d.feature_channels}"
            )
        self.hff = HybridFeatureFusion(self.net3d.feature_channels, hff_channels, out_channels, hff_dropout)
        if freeze_2d:
            self.net2d.requires_grad_(False)
        if freeze_batchnorm == "code":
            for module in self.net2d.decoder.modules():
                if isinstance(module, _BatchNorm):
                    module.requires_grad_(False)
        self.size_divisor = tuple(
            max(a, b) for a, b in zip((*self.net2d.size_divisor, 1), self.net3d.size_divisor, strict=True)
        )
        self.train(True)

    def fixed_batchnorms(self) -> list[_BatchNorm]:
        """BN layers kept in inference mode while training under ``freeze_batchnorm`` (see the class doc)."""
        if self.freeze_batchnorm == "none":
            return []
        fixed = [m for m in self.net2d.modules() if isinstance(m, _BatchNorm)]
        if self.freeze_batchnorm == "code":  # the code's 3D conv_block3d / transition_block3d BN (momentum 1)
            for name, block in self.net3d.encoder.features.named_children():
                if name.startswith(("denseblock", "transition")):
                    fixed += [m for m in block.modules() if isinstance(m, _BatchNorm)]
        return fixed

    def train(self, mode: bool = True) -> HDenseUNet:
        super().train(mode)
        if mode and self.freeze_2d:
            self.net2d.eval()
        if mode:
            for module in self.fixed_batchnorms():
                module.eval()
        return self

    def forward_2d(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The 2D branch restacked along z: ``(features (B, 64, I, J, K), logits (B, classes, I, J, K))``."""
        with torch.no_grad() if self.freeze_2d else nullcontext():
            features, logits = self.net2d.forward_features(stack_slices(x, self.slice_context))
        assert logits is not None  # the hybrid's 2D network keeps its classifier
        return unstack_slices(features, x.shape[0]), unstack_slices(logits, x.shape[0])

    def input_3d(self, x: torch.Tensor, logits_2d: torch.Tensor) -> torch.Tensor:
        """The 3D network's input ``(B, C + classes, I, J, K)``: the CT x ``image_scale`` and the 2D guidance."""
        guide = logits_2d.softmax(1) if self.guidance == "paper" else logits_2d * self.logit_scale
        image = x * self.image_scale if self.image_scale != 1.0 else x
        return torch.cat([image, guide], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if x.ndim != 5 or any(s % d for s, d in zip(x.shape[2:], self.size_divisor, strict=True)):
            raise ValueError(
                f"input {tuple(x.shape)} must be (B, C, I, J, K) with I, J, K divisible by {self.size_divisor}"
            )
        features_2d, logits_2d = self.forward_2d(x)
        features_3d = self.net3d.decode(self.input_3d(x, logits_2d))
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
