"""Self-constructing graph (SCG) latent and graph convolution layers, dimension-agnostic.

SCG (Liu et al., "Self-constructing graph convolutional networks for semantic labeling", 2020) as MICDIR
uses it: the deepest feature map is pooled to a small grid of nodes, a variational latent embedding
``z`` per node gives the adjacency ``A = act(z z^T)``, and a graph convolution network refines the node
features over ``A``.

Node layout: a ``(B, C, *grid)`` map becomes ``(B, N, C)`` node features with ``N = prod(grid)`` by
``flatten(2).transpose(1, 2)``. MICDIR's code uses ``reshape(B, N, C)`` instead, which mixes channels
and positions (node ``n`` gets ``C`` consecutive values of the channel-major buffer); we use the permute
the code means, in both directions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from monai.networks.layers.factories import Conv, Pool
from torch import nn


def to_nodes(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, *grid) -> (B, N, C)`` node features, ``N = prod(grid)``."""
    return x.flatten(2).transpose(1, 2)


def from_nodes(h: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """``(B, N, C) -> (B, C, *grid)``: inverse of :func:`to_nodes`."""
    return h.transpose(1, 2).reshape(h.shape[0], h.shape[2], *grid)


def normalize_adjacency(adjacency: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Symmetric normalisation ``D^-1/2 A D^-1/2`` with ``D = diag(column sums of A) + eps``.

    Args:
        adjacency: ``(B, N, N)`` (self loops already added).
        eps: added to the degrees as in the SCG code; degrees are also clamped to ``eps`` so that a row
            whose (LeakyReLU-negative) entries outweigh its diagonal cannot produce NaN.

    Returns:
        ``(B, N, N)`` normalised adjacency (symmetric when ``adjacency`` is).
    """
    degree = (adjacency.sum(dim=1) + eps).clamp_min(eps)
    inv_sqrt = degree.pow(-0.5)
    return inv_sqrt.unsqueeze(-1) * adjacency * inv_sqrt.unsqueeze(-2)


@dataclass
class GraphLatent:
    """What :class:`SelfConstructingGraph` returns.

    Attributes:
        nodes: ``(B, N, C)`` pooled input features, the GCN's input.
        adjacency: ``(B, N, N)`` normalised adjacency ``D^-1/2 (A + gamma diag(A) + I) D^-1/2``.
        raw_adjacency: ``(B, N, N)`` ``act(z z^T)`` before the diagonal boost and normalisation.
        z_hat: ``(B, N, latent)`` residual node embedding ``gamma * mu * (1 - log sigma)``.
        loss: scalar graph loss (KL term minus the gamma-weighted log of diagonal entries below 1).
        grid: the node grid.
    """

    nodes: torch.Tensor
    adjacency: torch.Tensor
    raw_adjacency: torch.Tensor
    z_hat: torch.Tensor
    loss: torch.Tensor
    grid: tuple[int, ...]


class SelfConstructingGraph(nn.Module):
    """SCG latent: adaptive pooling to a node grid, variational node embeddings, learned adjacency.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the feature map (MICDIR: 32).
        latent_channels: width of ``mu``/``log sigma`` per node (MICDIR: 9).
        node_grid: pooled grid size (int or per-axis; MICDIR: 4, i.e. 64 nodes in 3D).
        dropout: dropout on ``mu`` and ``log sigma`` (MICDIR: 0.2).
        negative_slope: slope of the LeakyReLU making ``A`` from ``z z^T`` (MICDIR's code: 0.2; the SCG
            paper's ReLU is 0).
        add_diagonal: add ``gamma * diag(A)`` before the self loops (code: True).
        batch_mean_gamma: the code scales ``z_hat`` and the diagonal loss by ``gamma`` averaged over the
            batch (``gama.mean()``), which couples the samples of a batch, and boosts each sample's diagonal
            by its own gamma (default True, the code's batch statistics); ``False`` uses each sample's gamma
            everywhere, as the formulas are written (identical for batch size 1).

    Shapes:
        input ``(B, in_channels, *spatial)``; see :class:`GraphLatent` for the outputs.

    Example:
        >>> scg = SelfConstructingGraph(3, 32, 9, 4)
        >>> scg(torch.randn(2, 32, 4, 4, 4)).adjacency.shape
        torch.Size([2, 64, 64])
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 32,
        latent_channels: int = 9,
        node_grid: int | Sequence[int] = 4,
        dropout: float = 0.2,
        negative_slope: float = 0.2,
        add_diagonal: bool = True,
        batch_mean_gamma: bool = True,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        grid = (node_grid,) * spatial_dims if isinstance(node_grid, int) else tuple(int(g) for g in node_grid)
        if len(grid) != spatial_dims or min(grid) < 1:
            raise ValueError(f"node_grid must be a positive int or {spatial_dims} positive ints, got {node_grid}")
        if in_channels < 1 or latent_channels < 1:
            raise ValueError("in_channels and latent_channels must be positive")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.grid = grid
        self.num_nodes = int(torch.tensor(grid).prod())
        self.negative_slope = float(negative_slope)
        self.add_diagonal = add_diagonal
        self.batch_mean_gamma = batch_mean_gamma
        conv = Conv[Conv.CONV, spatial_dims]
        self.pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](grid)
        self.mu = nn.Sequential(conv(in_channels, latent_channels, 3, padding=1, bias=True), nn.Dropout(dropout))
        self.log_sigma = nn.Sequential(conv(in_channels, latent_channels, 1, bias=True), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> GraphLatent:
        pooled = self.pool(x)
        mu_map, log_sigma_map = self.mu(pooled), self.log_sigma(pooled)
        mu, log_sigma = to_nodes(mu_map), to_nodes(log_sigma_map)  # (B, N, latent)
        z = mu + torch.exp(log_sigma) * torch.randn_like(mu) if self.training else mu

        raw = nn.functional.leaky_relu(z @ z.transpose(1, 2), self.negative_slope)
        diag = torch.diagonal(raw, dim1=1, dim2=2)  # (B, N) = |z_i|^2 >= 0
        # gamma = sqrt(1 + 1 / mean(diag)); the clamp only matters when every embedding is ~0 (code: none)
        gamma = torch.sqrt(1.0 + 1.0 / diag.mean(dim=1).clamp_min(1e-7))  # (B,), each sample's
        # the code weights the diagonal loss and z_hat by the batch mean, the diagonal boost per sample
        shared = gamma.mean().expand_as(gamma) if self.batch_mean_gamma else gamma

        batch, n = raw.shape[0], raw.shape[1]
        # KL of N(mu, sigma^2) from N(0, 1), summed over latent channels, averaged over batch and nodes, / N
        kl = -0.5 / self.num_nodes * torch.mean(
            torch.sum(1 + 2 * log_sigma - mu.pow(2) - torch.exp(log_sigma).pow(2), dim=2)
        )
        # diagonal loss: gamma-weighted log of the self-similarities below 1 (pushes them towards 1)
        small = torch.where(diag < 1, torch.log(diag + 1e-7), torch.zeros_like(diag))
        diag_loss = (shared * small.sum(dim=1)).sum() / (batch * n * n)
        loss = kl - diag_loss

        adjacency = raw
        if self.add_diagonal:
            adjacency = adjacency + torch.diag_embed(gamma.unsqueeze(1) * diag)
        adjacency = adjacency + torch.eye(n, device=raw.device, dtype=raw.dtype)
        adjacency = normalize_adjacency(adjacency)
        z_hat = shared.view(-1, 1, 1) * mu * (1.0 - log_sigma)
        return GraphLatent(to_nodes(pooled), adjacency, raw, z_hat, loss, self.grid)


class GraphConvLayer(nn.Module):
    """``Linear(A X) -> BatchNorm1d -> LeakyReLU -> Dropout`` over node features (MICDIR's GCN layer).

    The linear weights start orthogonal with zero bias, as the code's ``weight_xavier_init`` does.

    Args:
        in_features / out_features: node feature widths.
        batch_norm: BatchNorm1d over features (code: True).
        negative_slope: LeakyReLU slope (code: 0.2); ``None`` for no activation.
        dropout: dropout probability (code: 0.1).

    Shapes:
        ``x`` ``(B, N, in_features)``, ``adjacency`` ``(B, N, N)`` -> ``(B, N, out_features)``.

    Example:
        >>> GraphConvLayer(32, 16)(torch.randn(2, 64, 32), torch.eye(64).expand(2, 64, 64)).shape
        torch.Size([2, 64, 16])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        batch_norm: bool = True,
        negative_slope: float | None = 0.2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError("feature widths must be positive")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.linear = nn.Linear(in_features, out_features)
        nn.init.orthogonal_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.norm = nn.BatchNorm1d(out_features) if batch_norm else nn.Identity()
        self.act = nn.LeakyReLU(negative_slope) if negative_slope is not None else nn.Identity()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        h = self.linear(adjacency @ x)
        h = self.norm(h.transpose(1, 2)).transpose(1, 2)
        return self.dropout(self.act(h))
