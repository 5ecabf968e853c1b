"""Data of the semi-supervised mode: labelled / unlabelled cases, their crops and views, paired batches.

Unlabelled cases are dicts without a ``label`` key from the moment they are found, and their transforms
never name a label: a label-free random crop (``RandSpatialCropSamplesd``) replaces the label-driven one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from monai.transforms import Compose
from torch.utils.data import Dataset as TorchDataset

from medseg.config import PipelineConfig, SemiSupervisedConfig
from medseg.data.layouts import Case, discover_cases
from medseg.engine.data import _dataset, source_cases, split_cases
from medseg.errors import MedsegConfigError
from medseg.transforms.filter_cache import FilterCache
from medseg.transforms.loading import LoadCased
from medseg.transforms.presets import IMAGE, LABEL, intensity_augmentation, preprocessing, training_sampling
from medseg.transforms.views import FILTERED_KEYS, IntensityRanged, MutualViewsd, VolumeTreeFilterd, default_rotate_axes

#: views of a labelled crop / of an unlabelled crop (prefix ``u_``) in a batch
VIEW_KEYS = ("view1", "view2")
ROTATION_KEY = "rot90"
UNLABELLED_PREFIX = "u_"


def unlabelled_case(case: Case) -> Case:
    """The case without its label (the path is dropped, so nothing downstream can read it)."""
    return {"case": case["case"], "image": list(case["image"])}


def semi_cases(config: PipelineConfig, run_dir: Path) -> tuple[list[Case], list[Case], list[Case]]:
    """``(labelled training, unlabelled training, validation)`` cases.

    Sources: the pipeline's dataset (cases without a label are unlabelled) and ``data.unlabelled`` (all
    unlabelled). Validation cases come from the labelled ones (``data.val_cases`` / ``val_fraction``);
    then ``semi_supervised.labelled`` keeps the labels of only that fraction or count of the training pool
    (seeded choice), or of the named cases, and moves the other labelled cases to the unlabelled set.
    """
    semi = config.semi_supervised or SemiSupervisedConfig()
    source, cases = source_cases(config, run_dir)
    labelled = [c for c in cases if c["label"] is not None]
    unlabelled = [unlabelled_case(c) for c in cases if c["label"] is None]
    if config.data.unlabelled is not None:
        unlabelled += [unlabelled_case(c) for c in discover_cases(config.resolve(config.data.unlabelled))]
    names = [c["case"] for c in labelled + unlabelled]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise MedsegConfigError(f"data: case name(s) {', '.join(duplicates[:5])} appear twice among labelled and unlabelled cases")
    if not labelled:
        raise MedsegConfigError(f"{source}: no labelled case (semi-supervised training needs some)")
    train, val = split_cases(labelled, config)
    if isinstance(semi.labelled, list):
        unknown = sorted(set(semi.labelled) - {c["case"] for c in train})
        if unknown:
            raise MedsegConfigError(f"semi_supervised.labelled: {', '.join(unknown[:5])} not among the labelled training cases")
        kept = {i for i, c in enumerate(train) if c["case"] in set(semi.labelled)}
    elif semi.labelled is not None:
        pool = len(train) + len(unlabelled)
        keep = semi.labelled if isinstance(semi.labelled, int) else max(1, round(semi.labelled * pool))
        if keep > len(train):
            raise MedsegConfigError(f"semi_supervised.labelled: asks for {keep} labelled cases; {len(train)} are left after the validation split")
        kept = set(np.random.default_rng(config.seed).permutation(len(train))[:keep].tolist())
    if semi.labelled is not None:
        unlabelled += [unlabelled_case(c) for i, c in enumerate(train) if i not in kept]
        train = [c for i, c in enumerate(train) if i in kept]
    if not train:
        raise MedsegConfigError("no labelled training case left after the validation split")
    if semi.perturbation != "none" and semi.unsupervised_weight > 0 and not unlabelled:
        raise MedsegConfigError("semi-supervised training found no unlabelled case (data.unlabelled, cases without labels, or semi_supervised.labelled)")
    return train, unlabelled, val


def uses_unlabelled(semi: SemiSupervisedConfig) -> bool:
    """Whether unlabelled data take part (not for ``perturbation: none`` or a zero weight)."""
    return semi.perturbation != "none" and semi.unsupervised_weight > 0


def rotate_axes(config: PipelineConfig) -> tuple[int, int] | None:
    """Spatial axes of the second view's rotation (None: no rotation); checks that the patch is square there."""
    semi = config.semi_supervised or SemiSupervisedConfig()
    if not semi.views.rotate or semi.perturbation == "none":
        return None
    patch = config.train.patch_size
    axes = semi.views.rotate_axes or default_rotate_axes(patch, config.network.slice_axis)
    if axes is None:
        return None
    if patch[axes[0]] != patch[axes[1]]:
        raise MedsegConfigError(
            f"semi_supervised.views: rotation in axes {tuple(axes)} needs equal patch sizes there (patch {tuple(patch)}); set rotate: false or rotate_axes"
        )
    return (int(axes[0]), int(axes[1]))


def _views(config: PipelineConfig, prefix: str) -> MutualViewsd:
    semi = config.semi_supervised or SemiSupervisedConfig()
    v, f, n = semi.views, semi.dsaif, semi.noise
    return MutualViewsd(
        semi.perturbation,  # type: ignore[arg-type]  # the schema's Literal is the views' mode
        view_keys=(prefix + VIEW_KEYS[0], prefix + VIEW_KEYS[1]),
        rotation_key=prefix + ROTATION_KEY,
        prob=v.prob,
        swap_prob=f.swap_prob,
        gamma_prob=v.gamma_prob,
        gamma_range=v.gamma_range,
        rotate_axes=rotate_axes(config),
        noise_std=n.std,
        noise_clip=n.clip,
        min_area=f.min_area,
        levels=f.levels,
        rounding=f.rounding,
        connectivity=f.connectivity,
        scope=f.scope,
        quantisation=f.quantisation,
        bezier=v.bezier,
    )


def crop_dataset(config: PipelineConfig, cases: list[Case], labelled: bool, cache: FilterCache | None = None) -> Any:
    """Random crops (and, where the config asks for them, the two views) of labelled or unlabelled cases.

    Labelled items keep ``image`` and ``label``; with views they gain ``view1``, ``view2``, ``rot90``.
    Unlabelled items hold only ``u_view1``, ``u_view2``, ``u_rot90`` (and ``case``).
    """
    semi = config.semi_supervised or SemiSupervisedConfig()
    t = config.train
    with_views = semi.perturbation != "none" and (semi.views.labelled_too or not labelled)
    volume = with_views and semi.perturbation == "dsaif" and semi.dsaif.scope == "volume"
    image_keys = [IMAGE]
    steps: list[Any] = [LoadCased(modalities=config.data.modalities), preprocessing(config.preprocess, with_label=labelled), IntensityRanged()]
    if volume:
        f = semi.dsaif
        steps.append(
            VolumeTreeFilterd(
                slice_axis=config.network.slice_axis, min_area=f.min_area, levels=f.levels, rounding=f.rounding,
                connectivity=f.connectivity, cache=cache, quantisation=f.quantisation,
            )
        )
        image_keys += list(FILTERED_KEYS.values())
    spatial_axes = [a for a in range(3) if a != config.network.slice_axis]
    prefix = "" if labelled else UNLABELLED_PREFIX
    steps.append(
        training_sampling(
            t.patch_size, t.samples_per_volume, t.pos_fraction, t.augment, spatial_axes,
            image_keys=image_keys, label_key=LABEL if labelled else None, intensity_keys=() if with_views else None,
            class_ratios=t.class_ratios if labelled else None,
        )
    )
    if with_views:
        steps.append(_views(config, prefix))
        steps += intensity_augmentation(t.augment, [prefix + k for k in VIEW_KEYS])
    if not labelled:
        steps.append(_KeepKeys(["case", UNLABELLED_PREFIX + VIEW_KEYS[0], UNLABELLED_PREFIX + VIEW_KEYS[1], UNLABELLED_PREFIX + ROTATION_KEY]))
    return _dataset([dict(c) for c in cases], Compose(steps), config.data.cache)


class _KeepKeys:
    """Drop every key but ``keys`` (unlabelled items carry only their views into the batch)."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        return {k: data[k] for k in self.keys if k in data}


class MutualDataset(TorchDataset):
    """Pairs labelled and unlabelled crops: item ``i`` = unlabelled case ``i mod U`` + a labelled case.

    Length ``max(L, U)`` (an epoch visits every unlabelled case once, as the DSAIF code does, and every
    labelled case at least once); the labelled case of item ``i`` is ``perm[i] mod L`` for a seeded
    permutation, so the shuffled loader pairs them differently each epoch. Each of the
    ``samples_per_volume`` crops of a labelled case is merged with one crop of the unlabelled case.
    Without unlabelled data it is the labelled crops alone.
    """

    def __init__(self, labelled: Any, unlabelled: Any | None, seed: int = 0) -> None:
        self.labelled, self.unlabelled = labelled, unlabelled
        n_l = len(labelled)
        n_u = len(unlabelled) if unlabelled is not None else 0
        self.length = max(n_l, n_u)
        self.perm = np.random.default_rng(seed).permutation(max(self.length, 1))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> list[dict[str, Any]]:
        lab = self.labelled[int(self.perm[index]) % len(self.labelled)]
        lab = lab if isinstance(lab, list) else [lab]
        if self.unlabelled is None:
            return lab
        unl = self.unlabelled[index % len(self.unlabelled)]
        unl = unl if isinstance(unl, list) else [unl]
        merged = []
        for j, item in enumerate(lab):
            extra = {k: v for k, v in unl[j % len(unl)].items() if k != "case"}
            merged.append({**item, **extra})
        return merged


def mutual_dataset(config: PipelineConfig, labelled: list[Case], unlabelled: list[Case], run_dir: Path) -> MutualDataset:
    """The training dataset of the semi-supervised mode (see :class:`MutualDataset`)."""
    semi = config.semi_supervised or SemiSupervisedConfig()
    cache = None
    if semi.perturbation == "dsaif" and semi.dsaif.scope == "volume":
        cache_dir = config.resolve(semi.dsaif.cache_dir) if semi.dsaif.cache_dir else None
        cache = FilterCache(max_items=0 if config.data.cache else 8, cache_dir=cache_dir)
    lab = crop_dataset(config, labelled, labelled=True, cache=cache)
    unl = crop_dataset(config, unlabelled, labelled=False, cache=cache) if uses_unlabelled(semi) and unlabelled else None
    return MutualDataset(lab, unl, seed=config.seed)


def steps_per_epoch(dataset: MutualDataset, config: PipelineConfig) -> int:
    """Iterations per epoch the base loop will run (``iterations_per_epoch`` or one pass of the loader)."""
    batch = max(1, config.train.batch_size // config.train.samples_per_volume)
    return config.train.iterations_per_epoch or math.ceil(len(dataset) / batch)
