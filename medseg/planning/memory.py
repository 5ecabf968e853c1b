"""Network topology for a patch and the memory of one training step (estimated, or measured on a GPU).

Topology in the spirit of nnU-Net v2's ``get_pool_and_conv_props``: an axis is downsampled while its feature
map stays at least :data:`MIN_FEATURE` voxels and its spacing is at most twice the finest spacing (thick slices
are pooled only once the other axes have caught up); a 3x3x3 kernel along an axis only where the spacing
is within twice the finest, else 1 (in-plane convolutions first, as nnU-Net).

Memory: on a CUDA device one forward/backward with the optimiser's state is measured
(``torch.cuda.max_memory_allocated``). Without one it is estimated: parameters x 4 (weights, gradients, two
Adam moments) plus the activations autograd keeps, counted with forward hooks on a small probe patch and
scaled by the patch volume and batch (activations grow linearly with the voxels of a fully convolutional net).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from medseg.networks import create_network

MIN_FEATURE = 4
MAX_LEVELS = 6  # pooling steps at most (nnU-Net: feature maps >= 4, and 5-6 poolings in practice)


@dataclass(frozen=True)
class Topology:
    """UNet levels: ``strides`` (first is 1), ``kernels`` per level, per axis; ``divisor`` per axis."""

    strides: list[list[int]]
    kernels: list[list[int]]

    @property
    def divisor(self) -> list[int]:
        return [math.prod(s[a] for s in self.strides) for a in range(3)]


def topology(patch: Sequence[int], spacing: Sequence[float], max_levels: int = MAX_LEVELS) -> Topology:
    """Strides and kernels of a UNet for ``patch`` voxels at ``spacing`` mm (see the module docstring)."""
    size = [float(p) for p in patch]
    current = [float(s) for s in spacing]
    strides, kernels = [[1, 1, 1]], [[3 if s <= 2 * min(current) else 1 for s in current]]
    for _ in range(max_levels):
        finest = min(current)
        pool = [int(c <= 2 * finest and sz / 2 >= MIN_FEATURE) for c, sz in zip(current, size)]
        if not any(pool):
            break
        step = [2 if p else 1 for p in pool]
        size = [sz / st for sz, st in zip(size, step)]
        current = [c * st for c, st in zip(current, step)]
        strides.append(step)
        kernels.append([3 if c <= 2 * min(current) else 1 for c in current])
    return Topology(strides, kernels)


def round_patch(patch: Sequence[float], divisor: Sequence[int]) -> list[int]:
    """Each size rounded to the nearest multiple of its divisor (at least one multiple)."""
    return [max(d, round(p / d) * d) for p, d in zip(patch, divisor)]


def unet_kwargs(in_channels: int, out_channels: int, topo: Topology, base: int, cap: int) -> dict:
    """``unet`` registry kwargs: widths double per level from ``base`` up to ``cap``."""
    filters = [min(base * 2**i, cap) for i in range(len(topo.strides))]

    def collapse(v: Sequence[int]) -> int | list[int]:
        return v[0] if len(set(v)) == 1 else list(v)

    return {
        "spatial_dims": 3,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "filters": filters,
        "strides": [collapse(s) for s in topo.strides],
        "kernel_size": [collapse(k) for k in topo.kernels],
    }


def _activation_bytes(net: nn.Module, *inputs: torch.Tensor) -> int:
    """Bytes of every leaf module's output in one forward pass (what autograd keeps, approximately)."""
    total = 0

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal total
        outs = output if isinstance(output, (list, tuple)) else [output]
        total += sum(o.numel() * o.element_size() for o in outs if isinstance(o, torch.Tensor))

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            net(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total


@dataclass(frozen=True)
class StepMemory:
    """Memory of one training step: ``fixed`` bytes (parameters and optimiser) + ``per_voxel`` x batch x voxels."""

    fixed: int
    per_voxel: float
    measured: bool = False

    def bytes(self, patch: Sequence[int], batch: int) -> int:
        return int(self.fixed + self.per_voxel * batch * math.prod(patch))


def estimate_step_memory(name: str, kwargs: dict, divisor: Sequence[int], pair: bool = False) -> StepMemory:
    """Estimated memory of training ``name(**kwargs)`` (CPU, no step run): see the module docstring.

    ``pair``: a registration network, called with ``(fixed, moving)``, each ``(1, in_channels, *probe)``.
    """
    net = create_network(name, **kwargs).train()
    params = sum(p.numel() * p.element_size() for p in net.parameters())
    probe = [d * 2 for d in divisor]  # the smallest input every level can halve, doubled
    x = torch.zeros(1, kwargs.get("in_channels", 1), *probe)
    activations = _activation_bytes(net, *((x, x) if pair else (x,)))
    return StepMemory(fixed=4 * params, per_voxel=activations / math.prod(probe))


def measure_step_memory(name: str, kwargs: dict, patch: Sequence[int], batch: int, device: torch.device) -> int:
    """Peak CUDA bytes of one forward/backward/Adam step of ``name(**kwargs)`` on ``(batch, C, *patch)``."""
    net = create_network(name, **kwargs).to(device).train()
    optimiser = torch.optim.Adam(net.parameters())
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    x = torch.randn(batch, kwargs["in_channels"], *patch, device=device)
    with torch.autocast("cuda", dtype=torch.float16):
        out = net(x)
        out = out[0] if isinstance(out, (list, tuple)) else out
        loss = out.float().mean()
    loss.backward()
    optimiser.step()
    torch.cuda.synchronize(device)
    peak = int(torch.cuda.max_memory_allocated(device) - base)
    del net, optimiser, x, out, loss
    torch.cuda.empty_cache()
    return peak


__all__ = ["StepMemory", "Topology", "estimate_step_memory", "measure_step_memory", "round_patch", "topology", "unet_kwargs"]
