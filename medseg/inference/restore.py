"""Memory-bounded geometry restore: network-grid probabilities -> label map in the input grid.

The predictor's spatial preprocessing is MONAI's ``Orientation`` then (optionally) ``Spacing``; its exact
inverse resamples the probabilities back (bilinear, border) and flips/permutes them to the stored axis
order. Done on the whole volume that makes a float32 ``P x input`` map on the host. Here the resampling
is MONAI's own ``SpatialResample``, run slab by slab: each slab of the oriented input grid is resampled
from just the part of the network grid it needs (its bounding box, plus one voxel), argmax'ed at once
(uint8), and only the label map is flipped back by MONAI's ``Orientation`` inverse. Values are those of
the whole-volume inverse (the same interpolation at the same points; rounding of the per-slab affine
aside), and the largest temporary is one slab.

When the spatial operations recorded on the image are anything else, :func:`restore_labels` returns
``None`` and the caller uses MONAI's whole-volume inverse.
"""

from __future__ import annotations

import copy
import math
from typing import Any, cast

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Orientation, SpatialResample
from monai.utils import TraceKeys

from medseg.inference.stitch import SLAB_VOXELS
from medseg.model.heads import OutputHead


def _ops(image: MetaTensor) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    ops = list(image.applied_operations)
    names = [op.get(TraceKeys.CLASS_NAME) for op in ops]
    if names == ["Orientation"]:
        return ops[0], None
    if names == ["Orientation", "SpatialResample"]:
        return ops[0], ops[1]
    return None


def needs_resampling(preprocessed: MetaTensor) -> bool | None:
    """``False``: orientation only (labels can be made on the network grid); ``None``: unsupported ops."""
    ops = _ops(preprocessed)
    return None if ops is None else ops[1] is not None


def _translate(offset: tuple[float, ...]) -> torch.Tensor:
    t = torch.eye(len(offset) + 1, dtype=torch.float64)
    t[: len(offset), -1] = torch.as_tensor(offset, dtype=torch.float64)
    return t


def _source_box(src_affine: torch.Tensor, dst_affine: torch.Tensor, dst_shape: tuple[int, ...], src_shape: tuple[int, ...]) -> list[slice]:
    """Voxels of the source grid that bilinear sampling of the destination box can touch (plus one)."""
    xform = torch.linalg.solve(src_affine, dst_affine)
    corners = torch.tensor(np.array(np.meshgrid(*[[0, s - 1] for s in dst_shape], indexing="ij")).reshape(len(dst_shape), -1), dtype=torch.float64)
    pts = xform[:-1, :-1] @ corners + xform[:-1, -1:]
    lo = [max(0, math.floor(float(v)) - 1) for v in pts.min(1).values]
    hi = [min(s, math.ceil(float(v)) + 2) for v, s in zip(pts.max(1).values, src_shape)]
    return [slice(a, max(b, a + 1)) for a, b in zip(lo, hi)]


def reorient_labels(labels: torch.Tensor, preprocessed: MetaTensor, orientation_op: dict[str, Any], affine: torch.Tensor) -> np.ndarray:
    """``(*oriented)`` labels -> the stored axis order, by MONAI's inverse of the recorded ``Orientation``."""
    op = copy.deepcopy(orientation_op)
    op[TraceKeys.ID] = TraceKeys.NONE  # not the instance that recorded it
    out = MetaTensor(labels[None], meta=copy.deepcopy(preprocessed.meta))
    out.affine = affine
    out.applied_operations = [op]
    restored = cast(MetaTensor, Orientation(axcodes="RAS").inverse(out))
    return restored.as_tensor()[0].numpy()


@torch.inference_mode()
def restore_labels(
    probabilities: torch.Tensor, preprocessed: MetaTensor, head: OutputHead, dtype: torch.dtype, slab_voxels: int = SLAB_VOXELS
) -> np.ndarray | None:
    """Label map in the input grid from ``(P, *grid)`` probabilities (any device, any float dtype).

    Args:
        probabilities: on the network grid of ``preprocessed``.
        preprocessed: the network input (its affine and recorded spatial operations).
        dtype: label dtype (uint8 when the values fit).
        slab_voxels: voxels per channel of one resampled slab (bounds the temporaries).

    Returns:
        ``(I, J, K)`` labels, or ``None`` when the recorded operations are not Orientation [+ Spacing].
    """
    ops = _ops(preprocessed)
    if ops is None:
        return None
    orientation_op, resample_op = ops
    net_affine = torch.as_tensor(preprocessed.affine, dtype=torch.float64)
    if resample_op is None:
        labels = torch.empty(probabilities.shape[1:], dtype=dtype)
        rows = max(1, slab_voxels // max(1, probabilities[0, 0].numel()))
        for a in range(0, labels.shape[0], rows):
            labels[a : a + rows] = head.to_labels(probabilities[None, :, a : a + rows].float())[0].to(dtype).cpu()
        return reorient_labels(labels, preprocessed, orientation_op, net_affine)
    info = resample_op[TraceKeys.EXTRA_INFO]
    oriented_affine = torch.as_tensor(info["src_affine"], dtype=torch.float64)
    oriented_shape = tuple(int(s) for s in resample_op[TraceKeys.ORIG_SIZE])
    resample = SpatialResample(
        mode=info["mode"], padding_mode=info["padding_mode"], align_corners=False if info["align_corners"] == TraceKeys.NONE else info["align_corners"], dtype=np.float32
    )
    grid_shape = tuple(probabilities.shape[1:])
    labels = torch.empty(oriented_shape, dtype=dtype)
    rows = max(1, slab_voxels // max(1, int(np.prod(oriented_shape[1:]))))
    for a in range(0, oriented_shape[0], rows):
        b = min(a + rows, oriented_shape[0])
        dst_affine = oriented_affine @ _translate((a, 0, 0))
        dst_shape = (b - a, *oriented_shape[1:])
        box = _source_box(net_affine, dst_affine, dst_shape, grid_shape)
        crop = MetaTensor(probabilities[(slice(None), *box)].float(), affine=net_affine @ _translate(tuple(float(s.start) for s in box)))
        slab = cast(MetaTensor, resample(crop, dst_affine=dst_affine, spatial_size=dst_shape))
        labels[a:b] = head.to_labels(slab.as_tensor()[None])[0].to(dtype).cpu()
    return reorient_labels(labels, preprocessed, orientation_op, oriented_affine)


__all__ = ["needs_resampling", "reorient_labels", "restore_labels"]
