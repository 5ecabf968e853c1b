"""Load a case into MONAI ``MetaTensor``s through medseg's geometry-checked readers."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform

from medseg.errors import MedsegInputError
from medseg.io.geometry import Geometry
from medseg.io.image_io import read_image, read_modalities
from medseg.io.modalities import check_modality_order


def to_metatensor(array: np.ndarray, geometry: Geometry) -> MetaTensor:
    """``(C, I, J, K)`` array + geometry -> MetaTensor whose affine is the image's RAS affine."""
    meta = {"filename_or_obj": geometry.source, "original_affine": geometry.affine.copy()}
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(array)), affine=torch.as_tensor(geometry.affine), meta=meta)


def load_case_arrays(
    images: Sequence[str | Path], label: str | Path | None = None, modalities: Sequence[str] | None = None
) -> tuple[MetaTensor, MetaTensor | None, Geometry]:
    """Read the modalities of one case (and its label map) and check that they share one geometry.

    Several files are checked against ``modalities`` first (count, and order where the file names say
    which modality they hold; see :mod:`medseg.io.modalities`).

    Returns:
        ``(image (C, I, J, K) float32, label (1, I, J, K) or None, geometry of the first modality)``.
    """
    if modalities and len(images) > 1:
        check_modality_order(images, modalities)
    if len(images) == 1:
        array, geometry = read_image(images[0], "image", allow_channels=True)
        array = array[None] if array.ndim == 3 else np.moveaxis(array, -1, 0)
    else:
        array, geometry = read_modalities(list(images), list(modalities) if modalities else None)
    if modalities and array.shape[0] != len(modalities):
        raise MedsegInputError(images[0], f"has {array.shape[0]} channel(s); the model expects {len(modalities)} ({', '.join(modalities)})")
    label_t = None
    if label is not None:
        label_array, label_geometry = read_image(label, "label")
        problem = geometry.mismatch(label_geometry, atol=1e-4)
        if problem is not None:
            raise MedsegInputError(label, f"label map does not match its image {Path(images[0]).name}: {problem}")
        label_t = to_metatensor(label_array[None], label_geometry)
    return to_metatensor(array, geometry), label_t, geometry


class LoadCased(MapTransform):
    """Dictionary transform: ``{"image": [paths], "label": path}`` -> MetaTensors (geometry-checked).

    Unlike MONAI's ``LoadImaged`` it checks that every modality and the label share one geometry and
    raises :class:`~medseg.errors.MedsegInputError` naming the file that differs. An item without a
    ``label`` (unlabelled case) is loaded without one.
    """

    def __init__(self, image_key: str = "image", label_key: str = "label", modalities: Sequence[str] | None = None) -> None:
        super().__init__([image_key], allow_missing_keys=True)
        self.image_key, self.label_key = image_key, label_key
        self.modalities = list(modalities) if modalities else None

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        images = d[self.image_key]
        images = [images] if isinstance(images, (str, Path)) else list(images)
        label = d.get(self.label_key)
        image_t, label_t, _ = load_case_arrays(images, label, self.modalities)
        d[self.image_key] = image_t
        if label_t is not None:
            d[self.label_key] = label_t
        else:
            d.pop(self.label_key, None)
        return d
