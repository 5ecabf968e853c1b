"""MICDIR: multi-scale inverse-consistent deformable registration with a self-constructing graph latent.

Chatterjee et al., arXiv 2203.04317 (ISMRM 2022). Re-implemented from the paper;
details the paper leaves open follow the authors' code (``mscgunet/``), and each one is an argument.

Output contract (shared with ``voxelmorph``, see :mod:`medseg.networks.voxelmorph`): ``forward(fixed,
moving)`` returns a dict of tensors; every field is a *pull-back* displacement in voxels of the grid it
lives on (``moved(x) = moving(x + flow(x))``, channel ``i`` moves array axis ``i``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from torch import nn

from medseg.networks.blocks.registration import (
    DiffeomorphicIntegration,
    Warp,
    check_pair,
    check_widths,
    linear_mode,
)
from medseg.networks.blocks.scg import GraphConvLayer, SelfConstructingGraph, from_nodes
from medseg.networks.registry import register_network


def conv_act(dims: int, cin: int, cout: int, stride: int = 1, bias: bool = False, slope: float = 0.2) -> nn.Module:
    """3x3(x3) convolution (padding 1) followed by LeakyReLU, no normalisation (MICDIR's conv unit)."""
    return nn.Sequential(Conv[Conv.CONV, dims](cin, cout, 3, stride=stride, padding=1, bias=bias), nn.LeakyReLU(slope))


def flow_head(dims: int, cin: int, widths: Sequence[int], bias: bool, slope: float, final_act: bool) -> nn.Sequential:
    """Convs ``cin -> widths... -> dims``, each followed by LeakyReLU (the last one only if ``final_act``)."""
    layers: list[nn.Module] = []
    for w in widths:
        layers.append(conv_act(dims, cin, w, bias=bias, slope=slope))
        cin = w
    last = Conv[Conv.CONV, dims](cin, dims, 3, padding=1, bias=bias)
    layers.append(nn.Sequential(last, nn.LeakyReLU(slope)) if final_act else last)
    return nn.Sequential(*layers)


def registration_example_inputs(dims: int, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """``(fixed, moving)`` pair of ``(2, in_channels, 32, 32)`` or ``(2, in_channels, 16, 16, 16)`` images."""
    generator = torch.Generator().manual_seed(0)
    shape = (2, int(kwargs.get("in_channels", 1)), *([32 if dims == 2 else 16] * dims))
    return torch.rand(shape, generator=generator), torch.rand(shape, generator=generator)


@register_network(
    "micdir",
    spatial_dims=(2, 3),
    tiny_kwargs=lambda d: {
        "spatial_dims": d,
        "encoder_channels": (4, 8, 8, 8),
        "decoder_channels": (8, 8, 8),
        "head_channels": (4,),
        "half_head_channels": (4,),
        "node_grid": 2,
        "latent_channels": 3,
        "gcn_channels": (4, 3),
        "integration_steps": 2,
    },
    example_inputs=registration_example_inputs,
    output_kind="displacement",
    description="MICDIR: multi-scale inverse-consistent registration with a self-constructing graph latent",
)
class MICDIR(nn.Module):
    """MICDIR registration network (2D or 3D; the paper is 3D).

    Encoder: ``len(encoder_channels)`` conv+LeakyReLU units without normalisation, the first at stride 1
    and the others at stride 2, on ``cat(fixed, moving)``. Latent: :class:`SelfConstructingGraph` on the
    deepest features, then graph convolutions over its adjacency; the bottleneck is ``A h + z_hat`` on
    the node grid (``(B, latent, *node_grid)``), resized to the deepest feature map. Decoder: at each
    level, upsample (bi/trilinear) to the skip's size, concatenate ``[up, skip]``, conv+LeakyReLU.
    Heads: full resolution on ``cat(fixed, decoder)`` (33 -> 16 -> 16 -> 3 by default) and half
    resolution on the stride-2 decoder level (32 -> 16 -> 16 -> 3). Each head's output is a stationary
    velocity integrated by scaling and squaring at half its resolution (:class:`DiffeomorphicIntegration`).
    With ``bidirectional`` the same weights also register ``moving`` to ``fixed`` (the code's Y->X pass).

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of each image (fixed and moving alike).
        encoder_channels: widths of the encoder units (code: 16, 32, 32, 32, 32, 32: 128^3 -> 4^3).
        decoder_channels: widths of the decoder units, deepest first (``len(encoder_channels) - 1``).
        head_channels: hidden widths of the full-resolution flow head (code: 16, 16).
        half_head_channels: hidden widths of the half-resolution head (code: 16, 16); ``None`` drops it.
        latent_channels: SCG node embedding width, also the bottleneck's channels (code: 9).
        node_grid: SCG node grid per axis (code: 4, i.e. 64 nodes in 3D).
        gcn_channels: output widths of the graph conv layers (code: 16, 9); the last equals ``latent_channels``.
        scg_dropout / gcn_dropout: dropout in the SCG (0.2) and the GCN layers (0.1).
        negative_slope: LeakyReLU slope everywhere (0.2).
        batch_mean_gamma: the SCG's ``gamma`` averaged over the batch (default True, the code's batch
            statistics: it trains at batch 5, each direction a batch of its own); False: each sample's own
            gamma, as the formulas are written. The two agree at batch 1 (the CPU pipelines), so the choice
            matters only for batches > 1 (training; inference runs one pair at a time).
        flow_activation: the code ends each flow head with LeakyReLU(0.2) too (negative velocity components
            are scaled by 0.2); the paper does not say. Default True as the code; False gives a linear head
            (one 4 mm pair, 100 steps: tissue Dice 0.484 with the code's head, 0.523 linear; issue 19).
        conv_bias: bias in the encoder/decoder/head convolutions (code: False).
        integration_steps: scaling-and-squaring steps (7); 0 uses the heads' output as displacement.
        integration_downsize: integration grid factor relative to each head (2, as VoxelMorph).
        padding_mode: image warping outside the grid (``"zeros"`` as the code's ``grid_sample``).
        bidirectional: also return the reverse direction (training in the paper always uses both).

    Inputs:
        ``fixed``, ``moving``: ``(B, in_channels, *spatial)`` on the same grid, intensities in [0, 1] as
        the paper's min-max normalisation. Any spatial size works (the decoder resizes to each skip);
        sizes divisible by ``2 ** (len(encoder_channels) - 1)`` (32 by default) keep the levels exact.

    Returns:
        dict with ``flow`` ``(B, dims, *spatial)`` (moving -> fixed, voxels), ``moved`` ``(B, C, *spatial)``,
        ``velocity`` (the head's output before integration), ``flow_half`` / ``moved_half`` on the
        half-resolution head's grid (``moved_half`` warps ``moving`` linearly resized to that grid, as the
        code), ``graph_loss`` (0-dim); with ``bidirectional`` the same keys with suffix ``_reverse`` for
        ``moving`` as the fixed image (``moved_reverse`` is ``fixed`` warped onto ``moving``).

    Example:
        >>> net = MICDIR(3, encoder_channels=(4, 8, 8, 8), decoder_channels=(8, 8, 8), node_grid=2)
        >>> out = net(torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32))
        >>> out["flow"].shape, out["flow_half"].shape
        (torch.Size([1, 3, 32, 32, 32]), torch.Size([1, 3, 16, 16, 16]))
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        encoder_channels: Sequence[int] = (16, 32, 32, 32, 32, 32),
        decoder_channels: Sequence[int] = (32, 32, 32, 32, 32),
        head_channels: Sequence[int] = (16, 16),
        half_head_channels: Sequence[int] | None = (16, 16),
        latent_channels: int = 9,
        node_grid: int | Sequence[int] = 4,
        gcn_channels: Sequence[int] = (16, 9),
        scg_dropout: float = 0.2,
        gcn_dropout: float = 0.1,
        negative_slope: float = 0.2,
        batch_mean_gamma: bool = True,
        flow_activation: bool = True,
        conv_bias: bool = False,
        integration_steps: int = 7,
        integration_downsize: int = 2,
        padding_mode: str = "zeros",
        bidirectional: bool = True,
    ) -> None:
        super().__init__()
        enc, dec = check_widths(spatial_dims, in_channels, encoder_channels, decoder_channels)
        if len(enc) < 2:
            raise ValueError(f"encoder_channels needs at least two widths, got {encoder_channels}")
        if len(dec) != len(enc) - 1:
            raise ValueError(f"decoder_channels needs {len(enc) - 1} widths, got {decoder_channels}")
        if half_head_channels is not None and len(enc) < 3:
            raise ValueError("a half-resolution head needs at least three encoder levels")
        if not gcn_channels or int(gcn_channels[-1]) != latent_channels:
            raise ValueError(f"gcn_channels must end with latent_channels={latent_channels}, got {gcn_channels}")
        self.spatial_dims = spatial_dims
        self.bidirectional = bidirectional
        #: spatial sizes divisible by this keep every level exact (inference pads to it)
        self.size_divisor = 2 ** (len(enc) - 1)
        slope = negative_slope

        self.encoder = nn.ModuleList(
            conv_act(spatial_dims, cin, cout, stride=1 if i == 0 else 2, bias=conv_bias, slope=slope)
            for i, (cin, cout) in enumerate(zip([2 * in_channels, *enc[:-1]], enc, strict=True))
        )
        self.scg = SelfConstructingGraph(
            spatial_dims, enc[-1], latent_channels, node_grid, scg_dropout, slope, batch_mean_gamma=batch_mean_gamma
        )
        widths = [enc[-1], *[int(c) for c in gcn_channels]]
        self.gcn = nn.ModuleList(
            GraphConvLayer(a, b, negative_slope=slope, dropout=gcn_dropout)
            for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        skips = enc[-2::-1]  # skip widths, deepest first
        self.decoder = nn.ModuleList(
            conv_act(spatial_dims, cin + skip, cout, bias=conv_bias, slope=slope)
            for cin, skip, cout in zip([latent_channels, *dec[:-1]], skips, dec, strict=True)
        )
        self.head = flow_head(spatial_dims, in_channels + dec[-1], head_channels, conv_bias, slope, flow_activation)
        self.half_head = (
            flow_head(spatial_dims, dec[-2], half_head_channels, conv_bias, slope, flow_activation)
            if half_head_channels is not None
            else None
        )
        self.integrate = DiffeomorphicIntegration(integration_steps, integration_downsize)
        self.warp = Warp("bilinear", padding_mode)

    def _decode(self, fixed: torch.Tensor, moving: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Decoder outputs (deepest first) and the graph loss for one direction."""
        feats = []
        x = torch.cat([fixed, moving], dim=1)
        for unit in self.encoder:
            x = unit(x)
            feats.append(x)
        latent = self.scg(feats[-1])
        h = latent.nodes
        for layer in self.gcn:
            h = layer(h, latent.adjacency)
        h = latent.adjacency @ h + latent.z_hat
        mode = linear_mode(self.spatial_dims)
        x = F.interpolate(from_nodes(h, latent.grid), size=feats[-1].shape[2:], mode=mode, align_corners=False)
        outs = []
        for unit, skip in zip(self.decoder, feats[-2::-1], strict=True):
            up = F.interpolate(x, size=skip.shape[2:], mode=mode, align_corners=False)
            x = unit(torch.cat([up, skip], dim=1))
            outs.append(x)
        return outs, latent.loss

    def _register(self, fixed: torch.Tensor, moving: torch.Tensor) -> dict[str, torch.Tensor]:
        outs, graph_loss = self._decode(fixed, moving)
        velocity = self.head(torch.cat([fixed, outs[-1]], dim=1))
        flow = self.integrate(velocity)
        result = {"flow": flow, "moved": self.warp(moving, flow), "velocity": velocity, "graph_loss": graph_loss}
        if self.half_head is not None:
            flow_half = self.integrate(self.half_head(outs[-2]))
            mode = linear_mode(self.spatial_dims)
            moving_half = F.interpolate(moving, size=flow_half.shape[2:], mode=mode, align_corners=False)
            result["flow_half"] = flow_half
            result["moved_half"] = self.warp(moving_half, flow_half)
        return result

    def forward(
        self, fixed: torch.Tensor, moving: torch.Tensor, bidirectional: bool | None = None
    ) -> dict[str, torch.Tensor]:
        check_pair(fixed, moving, self.spatial_dims)
        out = self._register(fixed, moving)
        if self.bidirectional if bidirectional is None else bidirectional:
            out.update({f"{k}_reverse": v for k, v in self._register(moving, fixed).items()})
        return out
