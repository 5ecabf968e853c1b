"""IVD-Net (Dolz, Desrosiers, Ben Ayed, MICCAI 2018 IVDM3Seg): multi-path UNet with hyper-dense connections.

Re-implemented from the paper and the authors' code (josedolz/IVD-Net, class ``IVD_Net_asym`` and the
``weights_init`` of ``main.py``); no code copied.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Pool
from torch import nn

from medseg.networks.blocks.dilated_inception import DilatedInceptionBlock
from medseg.networks.registry import register_network

CARRY_MODES = ("pool", "crop")


def ivdnet_channels(n_modalities: int = 4, base_width: int = 32, depth: int = 4) -> dict[str, tuple[int, ...]]:
    """Channel bookkeeping of :class:`IVDNet` (per path) without building it.

    Returns:
        ``{"encoder_in": per-level input channels of one path, "encoder_out": per-level outputs,
        "bridge": (bridge_in, bridge_out)}``; paper defaults give ``(1, 128, 384, 896)``,
        ``(32, 64, 128, 256)`` and ``(1920, 512)``.
    """
    widths = [base_width * 2**level for level in range(depth + 1)]
    inputs = [1]
    for level in range(1, depth + 1):
        # level 1 gets only the pooled outputs of level 0 (the raw modality is not carried on)
        carried = inputs[level - 1] if level >= 2 else 0
        inputs.append(n_modalities * widths[level - 1] + carried)
    return {
        "encoder_in": tuple(inputs[:depth]),
        "encoder_out": tuple(widths[:depth]),
        "bridge": (inputs[depth], widths[depth]),
    }


def _centre_crop(x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Centre crop of ``x`` to the spatial ``shape`` (the original ``croppCenter``; start = floor(diff / 2))."""
    slices = [slice(None), slice(None)]
    for size, target in zip(x.shape[2:], shape, strict=True):
        start = (size - target) // 2
        slices.append(slice(start, start + target))
    return x[tuple(slices)]


def init_ivdnet_weights(module: nn.Module) -> None:
    """The authors' effective initialisation (``weights_init`` in ``main.py``, applied after construction).

    Xavier-normal weights for every (transposed) convolution, BatchNorm weight ~ N(1, 0.02) and bias 0;
    convolution biases keep PyTorch's default. (The constructor's He-normal init in ``IVD_Net.py`` is
    overwritten by this one in the authors' training script.)
    """
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            nn.init.xavier_normal_(m.weight)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def multimodal_tiny_kwargs(dims: int) -> dict[str, object]:
    """Registry tiny configuration (base width 4) of IVD-Net and its early-fusion baseline."""
    return {"spatial_dims": dims, "n_modalities": 4, "n_classes": 2, "base_width": 4}


def multimodal_example_inputs(dims: int, kwargs: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    """Registry example: ``(2, n_modalities, 32, 32)`` in 2D, ``(2, n_modalities, 16, 16, 16)`` in 3D (fast on CPU)."""
    return (torch.randn(2, int(kwargs.get("n_modalities", 4)), *([32 if dims == 2 else 16] * dims)),)


@register_network(
    "ivdnet",
    spatial_dims=(2, 3),
    tiny_kwargs=multimodal_tiny_kwargs,
    example_inputs=multimodal_example_inputs,
    description="IVD-Net: one encoder path per modality, hyper-dense connections, dilated inception blocks",
)
class IVDNet(nn.Module):
    """IVD-Net: multi-modal UNet with one encoder path per modality and hyper-dense connections.

    Architecture (authors' ``IVD_Net_asym``):

    - Input ``(B, n_modalities, *spatial)`` is split into single-channel paths, one per modality.
    - Each encoder level of each path is a :class:`DilatedInceptionBlock` with *asymmetric* branches
      (``k x 1`` then ``1 x k``; in 3D ``k x 1 x 1``, ``1 x k x 1``, ``1 x 1 x k``), widths
      ``base_width * (1, 2, 4, 8)``; bridge ``16 * base_width``.
    - Hyper-dense connections: level ``l + 1`` of path ``m`` takes the 2x max-pooled outputs of *all*
      paths at level ``l``, rotated so path ``m`` comes first (``m, m+1, ..., m-1``), concatenated with
      the input that fed path ``m`` at level ``l`` (from level 2 on; the raw modality is not carried).
      Per-path input channels at paper defaults: 1, 128, 384, 896; outputs 32, 64, 128, 256.
    - Bridge (one, shared): the pooled level-4 outputs of all paths plus path 0's carried input
      (1920 -> 512 channels at paper defaults).
    - Decoder, per level: 3x3 stride-2 transposed conv + BN + ReLU; the skip is the *mean* of the
      upsampled map and the ``n_modalities`` encoder outputs of that level (the code's
      ``(deconv + down_0 + ... + down_3) / 5``); then a :class:`DilatedInceptionBlock` with square
      ``k x k`` kernels. Widths 256, 128, 64, 32. A final 3x3 conv gives ``n_classes`` logits.
    - Xavier-normal initialisation (:func:`init_ivdnet_weights`). Train with plain cross-entropy.

    Paper vs code:
        ``carry_mode`` -- how the input of level ``l`` (at twice the resolution) is carried into level
        ``l + 1``. The code centre-crops it (``croppCenter``), a leftover of HyperDenseNet's unpadded
        convolutions: with padded convolutions the crop keeps only the central half of the field of
        view, so carried features are spatially misaligned with the pooled ones (a pixel at ``(i, j)``
        meets the carried pixel ``(i + H/4, j + W/4)`` of the larger ``H x W`` map) and the border is dropped.
        ``"pool"`` (default) max-pools it by 2 instead, keeping every carried feature aligned; this is the
        paper's intent (dense connections). ``"crop"`` reproduces the code (odd differences crop
        ``floor(diff / 2)`` first, where the code's crop would fail on a shape mismatch). With the
        authors' weights copied in, ``"crop"`` reproduces ``IVD_Net_asym``'s outputs (checked to 1e-5).

    Args:
        spatial_dims: 2 (paper) or 3 (our extension: factorised 3D branches, 2x2x2 pooling).
        n_modalities: number of modalities = input channels = encoder paths (4 Dixon images in IVDM3Seg:
            fat, in-phase, opposed-phase, water, in that order in the authors' loader).
        n_classes: output logits (2: background, disc).
        base_width: width of the first level (paper 32).
        depth: number of pooled encoder levels before the bridge (paper 4).
        carry_mode: ``"pool"`` (default) or ``"crop"`` (authors' code), see above.

    Shapes:
        input ``(B, n_modalities, H, W)`` or ``(B, n_modalities, D, H, W)``, every spatial size divisible by
        ``2 ** depth``; output ``(B, n_classes, *spatial)`` logits (no softmax).

    Example:
        >>> net = IVDNet(2, n_modalities=4, n_classes=2, base_width=4)
        >>> net(torch.zeros(2, 4, 32, 32)).shape
        torch.Size([2, 2, 32, 32])
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        n_modalities: int = 4,
        n_classes: int = 2,
        base_width: int = 32,
        depth: int = 4,
        carry_mode: str = "pool",
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if n_modalities < 1:
            raise ValueError(f"n_modalities must be >= 1, got {n_modalities}")
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        if base_width < 1:
            raise ValueError(f"base_width must be >= 1, got {base_width}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if carry_mode not in CARRY_MODES:
            raise ValueError(f"carry_mode must be one of {CARRY_MODES}, got {carry_mode!r}")
        self.spatial_dims = spatial_dims
        self.n_modalities = n_modalities
        self.depth = depth
        self.carry_mode = carry_mode
        channels = ivdnet_channels(n_modalities, base_width, depth)
        enc_in, enc_out = channels["encoder_in"], channels["encoder_out"]
        bridge_in, bridge_out = channels["bridge"]

        # paths[m][l]: encoder block of modality m at level l
        self.paths = nn.ModuleList(
            nn.ModuleList(DilatedInceptionBlock(spatial_dims, enc_in[lv], enc_out[lv]) for lv in range(depth))
            for _ in range(n_modalities)
        )
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)
        self.bridge = DilatedInceptionBlock(spatial_dims, bridge_in, bridge_out)
        # decoder stage i goes from level depth - i (bridge first) to level depth - 1 - i
        ups = [bridge_out, *reversed(enc_out)]
        self.up_convs = nn.ModuleList(
            Convolution(
                spatial_dims, c_in, c_out, strides=2, kernel_size=3, act="RELU", norm="BATCH",
                is_transposed=True, padding=1, output_padding=1,
            )
            for c_in, c_out in zip(ups[:-1], ups[1:], strict=True)
        )
        self.up_blocks = nn.ModuleList(
            DilatedInceptionBlock(spatial_dims, c, c, asymmetric=False) for c in ups[1:]
        )
        self.head = Convolution(spatial_dims, enc_out[0], n_classes, kernel_size=3, conv_only=True)
        init_ivdnet_weights(self)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(
                f"IVDNet ({self.spatial_dims}D) expects input (B, {self.n_modalities}, "
                f"{'D, ' if self.spatial_dims == 3 else ''}H, W), got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.n_modalities:
            raise ValueError(
                f"IVDNet expects {self.n_modalities} modalities stacked as channels, got {x.shape[1]} "
                f"channels (input shape {tuple(x.shape)})"
            )
        factor = 2**self.depth
        if any(s % factor for s in x.shape[2:]):
            raise ValueError(
                f"IVDNet spatial sizes must be divisible by 2**depth = {factor}, got {tuple(x.shape[2:])}"
            )

    def _carry(self, previous_input: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        if self.carry_mode == "pool":
            return self.pool(previous_input)
        return _centre_crop(previous_input, reference.shape[2:])

    def _next_inputs(self, outputs: list[torch.Tensor], inputs: list[torch.Tensor] | None) -> list[torch.Tensor]:
        """Hyper-dense inputs of the next level from this level's ``outputs`` (and ``inputs`` to carry)."""
        pooled = [self.pool(o) for o in outputs]
        n = self.n_modalities
        result = []
        for m in range(n):
            parts = [pooled[(m + k) % n] for k in range(n)]
            if inputs is not None:
                parts.append(self._carry(inputs[m], pooled[0]))
            result.append(torch.cat(parts, dim=1))
        return result

    def encode(self, x: torch.Tensor) -> tuple[list[list[torch.Tensor]], torch.Tensor]:
        """Encoder and bridge.

        Args:
            x: ``(B, n_modalities, *spatial)``.

        Returns:
            ``(features, bridge)``: ``features[l][m]`` is the output of path ``m`` at level ``l``,
            ``(B, base_width * 2**l, *spatial / 2**l)``; ``bridge`` is ``(B, 16 * base_width, *spatial / 16)``
            at depth 4.
        """
        self._check_input(x)
        inputs = list(torch.split(x, 1, dim=1))
        features: list[list[torch.Tensor]] = []
        for level in range(self.depth):
            outputs = [cast(nn.ModuleList, self.paths[m])[level](inputs[m]) for m in range(self.n_modalities)]
            features.append(outputs)
            inputs = self._next_inputs(outputs, inputs if level >= 1 else None)
        # the single bridge sees path 0's hyper-dense input, as in the code
        return features, self.bridge(inputs[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, n_modalities, *spatial) -> (B, n_classes, *spatial)`` logits."""
        features, y = self.encode(x)
        for stage, level in enumerate(reversed(range(self.depth))):
            up = self.up_convs[stage](y)
            skip = (up + sum(features[level])) / (self.n_modalities + 1)
            y = self.up_blocks[stage](skip)
        return self.head(y)
