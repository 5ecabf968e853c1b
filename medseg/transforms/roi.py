"""Region-of-interest boxes for cascades: a mask's bounding box plus a margin in mm, and the training crop.

At prediction time the box comes from a localiser model's output (:mod:`medseg.inference.cascade`); in
training and validation it comes from the reference label (H-DenseUNet's code crops its training samples
inside the liver box), so the network learns on what it will be shown.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, SpatialCrop
from scipy import ndimage

from medseg.config import RoiConfig

Box = tuple[slice, slice, slice]


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean mask (the mask itself when it has at most one)."""
    labelled, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    if count <= 1:
        return mask.astype(bool, copy=False)
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return labelled == int(sizes.argmax())


def roi_box(
    mask: np.ndarray, spacing: Sequence[float], margin_mm: Sequence[float], keep_largest: bool = True
) -> Box | None:
    """Bounding box of ``mask`` (``(I, J, K)``) grown by ``margin_mm`` on each side and clipped to the volume.

    Margins are converted to voxels per axis with ``spacing`` (rounded up). Returns ``None`` for an empty mask.

    Example:
        >>> m = np.zeros((10, 10, 10), bool); m[4:6, 4:6, 4:6] = True
        >>> roi_box(m, (1.0, 1.0, 2.0), (2.0, 2.0, 2.0))
        (slice(2, 8, None), slice(2, 8, None), slice(3, 7, None))
    """
    mask = np.asarray(mask, dtype=bool)
    if keep_largest:
        mask = largest_component(mask)
    if not mask.any():
        return None
    box = []
    for axis in range(3):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        grow = math.ceil(float(margin_mm[axis]) / float(spacing[axis]) - 1e-6)
        box.append(slice(max(int(hits[0]) - grow, 0), min(int(hits[-1]) + 1 + grow, mask.shape[axis])))
    return tuple(box)  # type: ignore[return-value]  # one slice per axis: three


def _spacing(x: Any) -> tuple[float, ...]:
    affine = np.asarray(x.affine.cpu() if hasattr(x.affine, "cpu") else x.affine, dtype=np.float64)
    return tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))


class CropToLabelRoid(MapTransform):
    """Crop image and label to the box of the label's ``labels`` voxels plus ``margin_mm`` (affine updated).

    A case without any of those labels is left whole. Input: MetaTensors ``(C, I, J, K)``.
    """

    def __init__(self, keys: Sequence[str], label_key: str, roi: RoiConfig) -> None:
        super().__init__(list(keys))
        self.label_key, self.roi = label_key, roi

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        label = d[self.label_key]
        values = torch.as_tensor(label)[0].cpu().numpy()
        box = roi_box(np.isin(values, self.roi.labels), _spacing(label), self.roi.margin_mm, self.roi.largest_component)
        if box is None:
            return d
        crop = SpatialCrop(roi_slices=box)
        for key in self.key_iterator(d):
            d[key] = crop(d[key])
        return d


def roi_training_transforms(roi: RoiConfig | None, keys: Sequence[str] = ("image", "label")) -> list[MapTransform]:
    """``[CropToLabelRoid]`` for a cascade's fine stage (training/validation), else nothing."""
    return [] if roi is None else [CropToLabelRoid(keys, "label", roi)]
