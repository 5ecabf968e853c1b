"""Preprocessing presets built from MONAI transforms, shared by training, validation and prediction.

The same :class:`~medseg.config.PreprocessConfig` (stored in every model package) builds the transforms
everywhere, so preprocessing cannot drift between training and inference:

``spatial``: ``Orientationd`` to the canonical orientation, then MONAI's ``Spacingd`` to the target voxel size
(bilinear for images, nearest for labels) onto a grid that float noise in the affine cannot move
(:class:`~medseg.transforms.grid.StableSpacingd`). Both are invertible: the predictor maps network outputs
back to the input grid with MONAI's inverse.

``intensity``: CT (window clip, then offset/scale), MRI (per-channel z-score over non-zero voxels),
min-max to [0, 1] after percentile clipping (per channel), none.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai.transforms import (
    Compose,
    EnsureTyped,
    NormalizeIntensityd,
    Orientationd,
    RandCropByLabelClassesd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandGaussianNoised,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSpatialCropSamplesd,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
    SpatialPadd,
)
from monai.transforms.transform import MapTransform

from medseg.config import AugmentConfig, PreprocessConfig
from medseg.transforms.grid import StableSpacingd

IMAGE, LABEL = "image", "label"


def spatial_transforms(cfg: PreprocessConfig, keys: Sequence[str] = (IMAGE,), label_keys: Sequence[str] = ()) -> list[MapTransform]:
    """Orientation to ``cfg.orientation`` then (if set) resampling to ``cfg.target_spacing``."""
    all_keys = [*keys, *label_keys]
    # labels given explicitly: nibabel RAS+ world (MONAI warns that its default will change)
    ras = (("L", "R"), ("P", "A"), ("I", "S"))
    out: list[MapTransform] = [Orientationd(keys=all_keys, axcodes=cfg.orientation, labels=ras, allow_missing_keys=True)]
    if cfg.target_spacing is not None:
        modes = ["bilinear"] * len(keys) + ["nearest"] * len(label_keys)
        out.append(
            StableSpacingd(keys=all_keys, pixdim=cfg.target_spacing, mode=modes, padding_mode="border", dtype=np.float32, allow_missing_keys=True)
        )
    return out


def intensity_transforms(cfg: PreprocessConfig, keys: Sequence[str] = (IMAGE,)) -> list[MapTransform]:
    """The intensity preset (applied per channel)."""
    if cfg.intensity == "ct":
        lo, hi = cfg.ct_window
        offset = lo if cfg.ct_offset is None else cfg.ct_offset
        scale = (hi - lo) if cfg.ct_scale is None else cfg.ct_scale
        # clip to the window, then (x - offset) / scale, in one MONAI transform
        return [ScaleIntensityRanged(keys=list(keys), a_min=lo, a_max=hi, b_min=(lo - offset) / scale, b_max=(hi - offset) / scale, clip=True)]
    if cfg.intensity == "mri":
        return [NormalizeIntensityd(keys=list(keys), nonzero=True, channel_wise=True)]
    if cfg.intensity == "minmax":
        lower, upper = cfg.minmax_percentiles
        return [ScaleIntensityRangePercentilesd(keys=list(keys), lower=lower, upper=upper, b_min=0.0, b_max=1.0, clip=True, channel_wise=True)]
    return []


def preprocessing(cfg: PreprocessConfig, with_label: bool = False) -> Compose:
    """Spatial + intensity preprocessing of an already loaded case (see :class:`~medseg.transforms.loading.LoadCased`)."""
    label_keys = [LABEL] if with_label else []
    return Compose(
        [
            *spatial_transforms(cfg, [IMAGE], label_keys),
            *intensity_transforms(cfg, [IMAGE]),
            EnsureTyped(keys=[IMAGE, *label_keys], dtype=None, track_meta=True, allow_missing_keys=True),
        ]
    )


def training_sampling(
    patch_size: Sequence[int],
    samples: int,
    pos_fraction: float,
    augment: AugmentConfig,
    spatial_axes: Sequence[int] = (0, 1, 2),
    image_keys: Sequence[str] = (IMAGE,),
    label_key: str | None = LABEL,
    intensity_keys: Sequence[str] | None = None,
    class_ratios: Sequence[float] | None = None,
) -> Compose:
    """Random part of the training pipeline: foreground-oversampled patches, then MONAI augmentations.

    Args:
        patch_size: spatial patch (use 1 along the slice axis for 2D networks).
        samples: patches drawn per volume.
        pos_fraction: fraction of patches centred on foreground.
        spatial_axes: axes along which flips are allowed (all three for 3D; the in-plane axes for 2D);
            ``augment.flip_axes`` narrows them (e.g. ``[0, 1]``: in-plane only, as H-DenseUNet's code).
        image_keys: images cropped and flipped together (e.g. an image and its filtered versions).
        label_key: the label map; ``None`` for unlabelled data: uniform random crops that never look
            at a label (``RandSpatialCropSamplesd``).
        intensity_keys: keys of the intensity augmentations (default ``image_keys``; ``()``: none).
        class_ratios: if given, patch centres are drawn per class with these ratios (class index = label
            value's position) instead of foreground/background (``RandCropByLabelClassesd``).
    """
    keys = [*image_keys, *([label_key] if label_key else [])]
    pos = max(pos_fraction, 0.0)
    neg = max(1.0 - pos_fraction, 0.0)
    crop: MapTransform = (
        RandSpatialCropSamplesd(keys=keys, roi_size=list(patch_size), num_samples=samples, random_size=False)
        if not label_key
        else RandCropByLabelClassesd(keys=keys, label_key=label_key, spatial_size=list(patch_size), ratios=list(class_ratios),
                                     num_classes=len(class_ratios), num_samples=samples, image_key=None, warn=False)
        if class_ratios is not None
        else RandCropByPosNegLabeld(keys=keys, label_key=label_key, spatial_size=list(patch_size), pos=pos, neg=neg, num_samples=samples, image_key=None)
    )
    out: list[MapTransform] = [SpatialPadd(keys=keys, spatial_size=list(patch_size), mode="constant"), crop]
    flip_axes = spatial_axes if augment.flip_axes is None else [a for a in spatial_axes if a in augment.flip_axes]
    for axis in flip_axes:
        if augment.flip > 0:
            out.append(RandFlipd(keys=keys, prob=augment.flip, spatial_axis=axis))
    in_plane = [a for a in spatial_axes if patch_size[a] > 1][:2]
    if augment.rotate90 > 0 and len(in_plane) == 2 and patch_size[in_plane[0]] == patch_size[in_plane[1]]:
        out.append(RandRotate90d(keys=keys, prob=augment.rotate90, spatial_axes=(in_plane[0], in_plane[1])))
    out += intensity_augmentation(augment, image_keys if intensity_keys is None else intensity_keys)
    return Compose(out)


def intensity_augmentation(augment: AugmentConfig, keys: Sequence[str] = (IMAGE,)) -> list[MapTransform]:
    """MONAI's random intensity scale, shift and Gaussian noise (one draw per call, shared by ``keys``)."""
    keys = list(keys)
    out: list[MapTransform] = []
    if augment.scale_intensity > 0 and keys:
        out.append(RandScaleIntensityd(keys=keys, factors=0.1, prob=augment.scale_intensity))
    if augment.shift_intensity > 0 and keys:
        out.append(RandShiftIntensityd(keys=keys, offsets=0.1, prob=augment.shift_intensity))
    if augment.gaussian_noise > 0 and keys:
        out.append(RandGaussianNoised(keys=keys, prob=augment.gaussian_noise, std=0.05))
    return out
