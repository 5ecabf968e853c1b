"""Fixed/moving pairs on the network grid: one path for registration training, validation and ``medseg register``.

The *network grid* is the fixed image's frame in the package's preset: each image is intensity-normalised
in its own grid (so ``minmax`` percentiles are the image's own, not those of a zero-padded resampled
copy), then brought to the canonical orientation and target spacing by the segmentation presets'
spatial transforms (MONAI ``Orientationd`` + ``Spacingd``, labels nearest); the moving image is then
resampled onto the fixed image's grid by world coordinates (MONAI ``ResampleToMatch``), skipped when the
two grids already agree (pre-aligned releases, MNI152 pairs). Networks see the grid padded symmetrically
with zeros to their stride (and at least to the training size); fields are cropped back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.transforms import Compose, ResampleToMatch

from medseg.config import PreprocessConfig
from medseg.io.image_io import Kind, read_image
from medseg.transforms.loading import to_metatensor
from medseg.transforms.presets import IMAGE, LABEL, intensity_transforms, spatial_transforms

GRID_ATOL = 1e-4


def load_volume(path: str | Path, kind: Kind = "image") -> MetaTensor:
    """``(1, I, J, K)`` MetaTensor of a 3D image (float32) or label map, geometry-checked by :func:`read_image`."""
    array, geometry = read_image(path, kind)
    return to_metatensor(array[None], geometry)


def same_grid(a: MetaTensor, b: MetaTensor, atol: float = GRID_ATOL) -> bool:
    """True when two MetaTensors share spatial shape and affine."""
    return tuple(a.shape[1:]) == tuple(b.shape[1:]) and bool(
        np.allclose(np.asarray(a.affine, dtype=np.float64), np.asarray(b.affine, dtype=np.float64), atol=atol, rtol=0)
    )


def resample_onto(image: MetaTensor, reference: MetaTensor, labels: bool = False) -> MetaTensor:
    """``image`` resampled onto ``reference``'s grid by world coordinates (zeros outside; nearest for labels)."""
    if same_grid(image, reference):
        return MetaTensor(image.as_tensor(), meta=dict(reference.meta))  # the meta holds the affine
    out = ResampleToMatch(mode="nearest" if labels else "bilinear", padding_mode="zeros")(image.float(), img_dst=reference)
    return cast(MetaTensor, out.round() if labels else out)


class PairGrid:
    """Puts fixed/moving pairs (and their label maps) on the network grid of a preprocessing preset.

    Args:
        preprocess: the pipeline's / package's :class:`~medseg.config.PreprocessConfig`.

    Example:
        >>> grid = PairGrid(PreprocessConfig(intensity="minmax", target_spacing=(2.0, 2.0, 2.0)))  # doctest: +SKIP
        >>> pair = grid.pair(grid.prepare(load_volume("f.nii.gz")), grid.prepare(load_volume("m.nii.gz")))  # doctest: +SKIP
    """

    def __init__(self, preprocess: PreprocessConfig) -> None:
        self.preprocess = preprocess
        self.intensity = Compose(intensity_transforms(preprocess, [IMAGE]))
        self.spatial = Compose(spatial_transforms(preprocess, [IMAGE], [LABEL]))

    def prepare(self, image: MetaTensor, labels: MetaTensor | None = None) -> dict[str, MetaTensor]:
        """One image (and its labels) in its own grid -> normalised, on its own network grid."""
        data: dict[str, Any] = {IMAGE: self.intensity({IMAGE: image})[IMAGE]}
        if labels is not None:
            data[LABEL] = labels
        data = self.spatial(data)
        return {k: v for k, v in data.items() if k in (IMAGE, LABEL)}

    def pair(self, fixed: dict[str, MetaTensor], moving: dict[str, MetaTensor]) -> dict[str, MetaTensor]:
        """Prepared fixed and moving -> ``fixed``, ``moving`` (+ ``fixed_labels``, ``moving_labels``) on the fixed grid."""
        reference = fixed[IMAGE]
        out = {"fixed": reference, "moving": resample_onto(moving[IMAGE], reference)}
        if LABEL in fixed:
            out["fixed_labels"] = fixed[LABEL]
        if LABEL in moving:
            out["moving_labels"] = resample_onto(moving[LABEL], reference, labels=True)
        return out


def network_size(shape: Sequence[int], minimum: Sequence[int], divisor: int | Sequence[int]) -> tuple[int, ...]:
    """Per axis ``max(minimum, shape rounded up to a multiple of divisor)`` (``divisor``: one or per axis)."""
    divisors = [int(divisor)] * len(shape) if isinstance(divisor, int) else [int(d) for d in divisor]
    return tuple(
        max(int(m), int(math.ceil(s / d) * d)) for s, m, d in zip(shape, minimum, divisors, strict=True)
    )


def pad_to(x: torch.Tensor, size: Sequence[int]) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Zero-pad ``(C, *spatial)`` symmetrically to ``size`` (each at least the current size).

    Returns:
        the padded tensor and the slices (spatial axes) that select the original region in it.
    """
    spatial = x.shape[1:]
    before = [(int(n) - int(s)) // 2 for s, n in zip(spatial, size, strict=True)]
    after = [int(n) - int(s) - b for s, n, b in zip(spatial, size, before, strict=True)]
    if min(before + after) < 0:
        raise ValueError(f"cannot pad {tuple(spatial)} to the smaller {tuple(size)}")
    pads = [p for b, a in zip(reversed(before), reversed(after), strict=True) for p in (b, a)]
    padded = F.pad(torch.as_tensor(x), pads) if any(pads) else torch.as_tensor(x)
    return padded, tuple(slice(b, b + int(s)) for b, s in zip(before, spatial, strict=True))


def random_crop_slices(shape: Sequence[int], size: Sequence[int], generator: torch.Generator | None = None) -> tuple[slice, ...]:
    """A uniformly random window of ``size`` inside ``shape`` (sizes at most ``shape``)."""
    out = []
    for s, n in zip(shape, size, strict=True):
        start = int(torch.randint(0, int(s) - int(n) + 1, (1,), generator=generator)) if s > n else 0
        out.append(slice(start, start + int(n)))
    return tuple(out)
