"""The network grid of the spacing preset: a deterministic function of the input geometry, stable under noise.

MONAI's ``Spacing`` keeps the input's direction (``zoom_affine(..., diagonal=False)``) and then, in
``compute_shape_offset``, either puts the grid's first voxel on the input's first voxel (when that corner is
the minimum in the new axes, tested with ``np.allclose(min_corner, 0)``, i.e. ``atol=1e-8`` voxels) or
centres the grid on the input. For an oblique image the float32 rounding of its affine (NIfTI stores
float32; DICOM direction cosines are decimal strings) leaves a shear of ~1e-7 that flips this test: the
origin jumps by half a voxel or more. Its ``np.round(extent + 1)`` also jumps at half-integer extents,
which nice spacing ratios hit exactly (39 x 2.5 mm / 3 mm = 32.5).

:func:`network_grid` computes the same grid as MONAI whenever MONAI aligns the first voxel (every
orthogonal affine), but continuously: the grid starts at the minimum of the input's voxel-centre box in the
new axes (no branch), and extents within :data:`SHAPE_TOL` voxel of a half-integer are snapped onto it
before rounding. :class:`StableSpacingd` is MONAI's ``Spacingd`` with that grid passed to its own
``SpatialResample`` (``dst_affine``/``spatial_size``): MONAI still resamples, records the operation and
inverts it exactly (lazy mode, the recorded op and the inverse are unchanged).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import AFFINE_TOL, affine_to_spacing, to_affine_nd, zoom_affine
from monai.transforms import Spacing, Spacingd

#: extents (in output voxels) this close to a half-integer are snapped onto it before rounding to a shape
SHAPE_TOL = 0.01


def network_grid(
    affine: np.ndarray | torch.Tensor, shape: Sequence[int], pixdim: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, tuple[int, ...]]:
    """``(destination affine (N+1, N+1), destination shape (N,))`` of resampling ``shape``/``affine`` to ``pixdim``.

    Direction and spacing as MONAI's ``Spacing`` (shear removed; a target within ``AFFINE_TOL`` of the
    input's spacing keeps the input's spacing; non-positive entries keep it too). The grid covers the
    input's voxel centres from their minimum in the new axes; the result moves by about as much as the
    affine does.
    """
    sr = len(shape)
    affine = affine.detach().cpu().numpy() if isinstance(affine, torch.Tensor) else affine
    src = np.asarray(to_affine_nd(sr, np.asarray(affine, dtype=np.float64)), dtype=np.float64)
    target = np.asarray(pixdim, dtype=np.float64)[:sr]
    target = np.append(target, [target[-1]] * (sr - target.size))
    current = affine_to_spacing(src, sr, np.float64)
    out_d = np.where(np.abs(current - target) <= AFFINE_TOL, current, target)  # as MONAI: keep a spacing within AFFINE_TOL
    dst = zoom_affine(src, out_d, diagonal=False)  # input direction, new spacing, zero translation
    corners = np.array(np.meshgrid(*[(0.0, n - 1.0) for n in shape], indexing="ij")).reshape(sr, -1)
    pts = np.linalg.solve(dst, src) @ np.vstack([corners, np.ones((1, corners.shape[1]))])
    lo, hi = pts[:sr].min(1), pts[:sr].max(1)
    extent = hi - lo
    half = np.floor(extent) + 0.5
    extent = np.where(np.abs(extent - half) < SHAPE_TOL, half, extent)
    out_shape = np.maximum(np.round(extent + 1.0), 1).astype(int)  # MONAI's rounding (half to even)
    dst[:sr, sr] = dst[:sr, :sr] @ lo
    return dst, tuple(int(s) for s in out_shape)


class StableSpacing(Spacing):
    """MONAI ``Spacing`` resampling to :func:`network_grid` (no ``diagonal``/``scale_extent``/``min_pixdim`` options)."""

    def __call__(  # type: ignore[override]  # MONAI Spacing.__call__ signature, narrowed
        self,
        data_array: torch.Tensor,
        mode: str | int | None = None,
        padding_mode: str | None = None,
        align_corners: bool | None = None,
        dtype: Any = None,
        scale_extent: bool | None = None,
        output_spatial_shape: Sequence[int] | None = None,
        lazy: bool | None = None,
    ) -> torch.Tensor:
        """``(C, *spatial)`` -> ``(C, *grid)`` resampled (or pending, when lazy) onto the network grid."""
        if isinstance(data_array, MetaTensor):
            shape, affine = data_array.peek_pending_shape(), data_array.peek_pending_affine()
        else:
            shape, affine = data_array.shape[1:], np.eye(len(data_array.shape))
        dst_affine, dst_shape = network_grid(affine, shape, self.pixdim)
        return self.sp_resample(
            data_array,
            dst_affine=torch.as_tensor(dst_affine, dtype=torch.float64),
            spatial_size=list(dst_shape if output_spatial_shape is None else output_spatial_shape),
            mode=mode,
            padding_mode=padding_mode,
            align_corners=align_corners,
            dtype=dtype,
            lazy=self.lazy if lazy is None else lazy,
        )


class StableSpacingd(Spacingd):
    """MONAI ``Spacingd`` whose array transform is :class:`StableSpacing` (same keys, modes and inverse)."""

    def __init__(
        self, keys: Any, pixdim: Sequence[float], mode: Any = "bilinear", padding_mode: Any = "border", dtype: Any = np.float64,
        allow_missing_keys: bool = False, lazy: bool = False,
    ) -> None:
        super().__init__(keys, pixdim, mode=mode, padding_mode=padding_mode, dtype=dtype, allow_missing_keys=allow_missing_keys, lazy=lazy)
        self.spacing_transform = StableSpacing(pixdim, lazy=lazy)


__all__ = ["SHAPE_TOL", "StableSpacing", "StableSpacingd", "network_grid"]
