"""Dense displacement fields: warping, resizing, scaling-and-squaring integration and composition.

Convention (MONAI's ``Warp`` and VoxelMorph's ``SpatialTransformer`` share it): a displacement field
``flow`` has shape ``(B, dims, *spatial)`` in voxel units of its own grid, channel ``i`` displaces array
axis ``i``, and warping *pulls back*: ``moved(x) = image(x + flow(x))``. ``T_flow(x) = x + flow(x)`` maps
a voxel of the output grid to the position it samples in the input image.

Warping and integration reuse MONAI's ``Warp`` and ``DVF2DDF``; :class:`Warp` below only fixes their
reference-grid cache and runs them in float32 (see its docstring).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks.warp import DVF2DDF
from monai.networks.blocks.warp import Warp as MonaiWarp
from torch import nn

_LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def check_widths(spatial_dims: int, in_channels: int, *widths: Sequence[int]) -> list[list[int]]:
    """Validate a registration network's common arguments; returns each width list as ints."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be positive, got {in_channels}")
    lists = [[int(c) for c in w] for w in widths]
    if any(c < 1 for w in lists for c in w):
        raise ValueError(f"channel widths must be positive, got {widths}")
    return lists


def check_pair(fixed: torch.Tensor, moving: torch.Tensor, spatial_dims: int, stride: int = 1) -> None:
    """Raise ``ValueError`` unless fixed and moving are equal-shape ``(B, C, *spatial)`` batches whose
    spatial sizes are divisible by ``stride``."""
    if fixed.shape != moving.shape:
        raise ValueError(f"fixed {tuple(fixed.shape)} and moving {tuple(moving.shape)} must have the same shape")
    if fixed.ndim != spatial_dims + 2 or any(s % stride for s in fixed.shape[2:]):
        raise ValueError(
            f"expected (B, C, *spatial) with {spatial_dims} spatial sizes divisible by {stride}, "
            f"got {tuple(fixed.shape)}"
        )


def linear_mode(spatial_dims: int) -> str:
    """``F.interpolate`` mode for (bi/tri)linear interpolation in ``spatial_dims`` dimensions."""
    if spatial_dims not in _LINEAR_MODES:
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
    return _LINEAR_MODES[spatial_dims]


class Warp(MonaiWarp):
    """MONAI's ``Warp`` with a cache that follows device and dtype, computing in float32.

    MONAI caches the identity grid keyed on shape only: after ``model.to("cuda")`` (or a float16 field
    under autocast) the stale CPU / half-precision grid would be reused. A half-precision grid also
    quantises voxel coordinates (steps of 1/16 voxel near index 100), so the field and image are cast to
    float32 with autocast off; the result is float32.

    Args:
        mode: ``"bilinear"`` (linear in 2D and 3D) or ``"nearest"`` (labels).
        padding_mode: ``"zeros"`` (VoxelMorph and MICDIR), ``"border"`` or ``"reflection"``.

    Example:
        >>> Warp()(torch.rand(1, 1, 8, 8, 8), torch.zeros(1, 3, 8, 8, 8)).shape
        torch.Size([1, 1, 8, 8, 8])
    """

    def __init__(self, mode: str = "bilinear", padding_mode: str = "zeros") -> None:
        if mode not in ("bilinear", "nearest", "bicubic"):
            raise ValueError(f"mode must be 'bilinear', 'nearest' or 'bicubic', got {mode!r}")
        if padding_mode not in ("zeros", "border", "reflection"):
            raise ValueError(f"padding_mode must be 'zeros', 'border' or 'reflection', got {padding_mode!r}")
        with warnings.catch_warnings():  # MONAI warns on every instance that it uses torch's grid_sample
            warnings.simplefilter("ignore")
            super().__init__(mode=mode, padding_mode=padding_mode)

    def get_reference_grid(self, ddf: torch.Tensor, jitter: bool = False, seed: int = 0) -> torch.Tensor:
        grid = self.ref_grid
        if grid is not None and (grid.device != ddf.device or grid.dtype != ddf.dtype):
            self.ref_grid = None
        return super().get_reference_grid(ddf, jitter=jitter, seed=seed)

    def forward(self, image: torch.Tensor, ddf: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=ddf.device.type, enabled=False):
            return super().forward(image.float(), ddf.float())


def resize_flow(flow: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resample a displacement field to ``size`` and rescale its vectors to the new grid's voxels.

    Interpolation uses ``align_corners=True``, so corner voxels keep their positions and a displacement
    of ``d`` voxels along an axis of ``n`` voxels becomes ``d * (m - 1) / (n - 1)`` on ``m`` voxels.
    VoxelMorph (and MICDIR's code) multiply by 0.5 / 2 instead, which is that factor only in the limit
    of large grids (0.496 rather than 0.5 at 128 voxels).

    Args:
        flow: ``(B, dims, *spatial)`` displacement in voxels.
        size: target spatial size.

    Returns:
        ``(B, dims, *size)`` displacement in voxels of the target grid.
    """
    dims = flow.ndim - 2
    size = tuple(int(s) for s in size)
    if len(size) != dims:
        raise ValueError(f"size {size} does not have {dims} entries")
    old = flow.shape[2:]
    if tuple(old) == size:
        return flow
    factors = [(m - 1) / (n - 1) if n > 1 and m > 1 else 1.0 for n, m in zip(old, size, strict=True)]
    scale = torch.tensor(factors, dtype=flow.dtype, device=flow.device).view(1, dims, *([1] * dims))
    return F.interpolate(flow, size=size, mode=linear_mode(dims), align_corners=True) * scale


class DiffeomorphicIntegration(nn.Module):
    """Stationary velocity field -> displacement by scaling and squaring (MONAI ``DVF2DDF``).

    As in VoxelMorph and MICDIR's code, the velocity is first resized to ``1/downsize`` of its grid
    (rescaling the vectors), integrated there in ``steps`` squarings, and resized back.

    Args:
        steps: number of squarings (MICDIR and VoxelMorph: 7); 0 returns the input (no integration).
        downsize: integration grid factor (2: half resolution; 1: the velocity's own grid).
        padding_mode: how the field is extended outside the grid while squaring (``"zeros"`` as the code).

    Shapes:
        ``(B, dims, *spatial) -> (B, dims, *spatial)``, voxel units.

    Example:
        >>> v = torch.zeros(1, 3, 16, 16, 16)
        >>> DiffeomorphicIntegration(7, 2)(v).abs().max().item()
        0.0
    """

    def __init__(self, steps: int = 7, downsize: int = 2, padding_mode: str = "zeros") -> None:
        super().__init__()
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if downsize < 1:
            raise ValueError(f"downsize must be >= 1, got {downsize}")
        self.steps = int(steps)
        self.downsize = int(downsize)
        self.integrate: DVF2DDF | None = None
        if self.steps > 0:
            with warnings.catch_warnings():  # its own Warp warns as above; it is replaced right away
                warnings.simplefilter("ignore")
                self.integrate = DVF2DDF(num_steps=self.steps, padding_mode=padding_mode)
            self.integrate.warp_layer = Warp(padding_mode=padding_mode)

    def forward(self, velocity: torch.Tensor) -> torch.Tensor:
        if self.integrate is None:
            return velocity
        size = velocity.shape[2:]
        small = [max(2, s // self.downsize) if s > 1 else 1 for s in size]
        with torch.autocast(device_type=velocity.device.type, enabled=False):
            ddf = self.integrate(resize_flow(velocity.float(), small))
        return resize_flow(ddf, size)


def warp(image: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear", padding_mode: str = "zeros") -> torch.Tensor:
    """Pull ``image`` (``(B, C, *spatial)``) back through ``flow`` (``(B, dims, *spatial)``, voxels)."""
    return Warp(mode, padding_mode)(image, flow)


def warp_labels(labels: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour warp of an integer label map; voxels sampled outside the grid become 0.

    Args:
        labels: ``(B, 1, *spatial)`` integer (or float holding integers) label map.
        flow: ``(B, dims, *spatial)`` displacement in voxels.

    Returns:
        the warped label map with the dtype of ``labels``.
    """
    moved = Warp("nearest", "zeros")(labels.float(), flow)
    return moved.round().to(labels.dtype)


def compose_flows(outer: torch.Tensor, inner: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Displacement of ``T_outer o T_inner`` where ``T_f(x) = x + f(x)``.

    ``warp(warp(image, outer), inner) == warp(image, compose_flows(outer, inner))`` up to interpolation:
    the result is ``inner(x) + outer(x + inner(x))``. ``outer`` is extended by its border values outside
    the grid, which keeps translations exact.
    """
    return inner + warp(outer, inner, padding_mode=padding_mode)


def identity_grid(shape: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
    """``(dims, *shape)`` voxel coordinates (``ij`` indexing), float32."""
    axes = [torch.arange(s, dtype=torch.float32, device=device) for s in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=0)
