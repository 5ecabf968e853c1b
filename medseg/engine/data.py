"""Cases for a pipeline: discovery, deterministic train/validation split, MONAI datasets and loaders."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader, Dataset
from monai.transforms import Compose
from torch.utils.data import DistributedSampler

from medseg.config import PipelineConfig
from medseg.data.layouts import Case, discover_cases
from medseg.data.registry import generate_phantom
from medseg.engine import distributed
from medseg.errors import MedsegConfigError
from medseg.progress import step
from medseg.transforms.loading import LoadCased
from medseg.transforms.presets import preprocessing, training_sampling
from medseg.transforms.roi import roi_training_transforms
from medseg.transforms.slice_context import slice_context_transforms


def pipeline_cases(config: PipelineConfig, run_dir: Path) -> list[Case]:
    """Every labelled case the pipeline trains and validates on (synthetic ones are generated once)."""
    source, cases = source_cases(config, run_dir)
    cases = [c for c in cases if c["label"] is not None]
    if len(cases) < 2:
        raise MedsegConfigError(f"{source}: needs at least 2 labelled cases (found {len(cases)})")
    return cases


def source_cases(config: PipelineConfig, run_dir: Path) -> tuple[Path, list[Case]]:
    """``(source, every case of data.dataset / data.synthetic, labelled or not)``; phantoms generated once."""
    if config.data.synthetic is not None:
        syn = config.data.synthetic
        folder = run_dir / "data"
        if not (folder / "dataset.json").is_file():
            generate_phantom(syn.kind, folder, syn.n_train, syn.n_test, syn.seed, **syn.options)
        source: Path = folder
        layout = "auto"
    else:
        assert config.data.dataset is not None
        source = config.resolve(config.data.dataset)
        layout = config.data.layout
    return source, discover_cases(source, layout)


def split_cases(cases: list[Case], config: PipelineConfig) -> tuple[list[Case], list[Case]]:
    """Deterministic split: ``data.val_cases`` if given, else a seeded ``val_fraction`` of the cases."""
    names = [c["case"] for c in cases]
    if config.data.val_cases is not None:
        unknown = sorted(set(config.data.val_cases) - set(names))
        if unknown:
            raise MedsegConfigError(f"data.val_cases: unknown case(s) {', '.join(unknown)}")
        val = set(config.data.val_cases)
    else:
        n_val = math.ceil(len(cases) * config.data.val_fraction) if config.data.val_fraction > 0 else 0
        order = np.random.default_rng(config.seed).permutation(len(cases))
        val = {names[i] for i in order[:n_val]}
    return [c for c in cases if c["case"] not in val], [c for c in cases if c["case"] in val]


def _dataset(items: list[dict[str, Any]], transform: Compose, cache: bool) -> Dataset:
    if cache:
        with step(f"loading and preprocessing {len(items)} training case(s) into memory"):
            return CacheDataset(items, transform=transform, cache_rate=1.0, num_workers=0, progress=False)
    return Dataset(items, transform=transform)


def labelled_case_transforms(config: PipelineConfig) -> list[Any]:
    """Load, preprocess, crop to a cascade's ROI (from the label), add slice context: a case on the network grid."""
    return [
        LoadCased(modalities=config.data.modalities),
        preprocessing(config.preprocess, with_label=True),
        *roi_training_transforms(config.roi),
        *slice_context_transforms(config.network),
    ]


def training_dataset(config: PipelineConfig, cases: list[Case]) -> Dataset:
    """Loads, preprocesses (cached) and samples augmented patches (random part re-run every epoch)."""
    spatial_axes = [a for a in range(3) if a != config.network.slice_axis]
    transform = Compose(
        [
            *labelled_case_transforms(config),
            training_sampling(
                config.train.patch_size, config.train.samples_per_volume, config.train.pos_fraction, config.train.augment, spatial_axes,
                class_ratios=config.train.class_ratios,
            ),
        ]
    )
    return _dataset([dict(c) for c in cases], transform, config.data.cache)


def epoch_loader(dataset: Dataset, config: PipelineConfig, epoch_seed: int) -> DataLoader:
    """Shuffled loader whose order and augmentations depend only on ``epoch_seed`` (exact resume).

    Under torchrun each rank draws a disjoint share of the cases (``DistributedSampler`` seeded with
    ``epoch_seed``, the same on every rank) and its workers' augmentations from a rank-specific seed.
    """
    sampler: DistributedSampler[Any] | None = None
    if distributed.active():
        sampler = DistributedSampler(dataset, shuffle=True, seed=epoch_seed)
        epoch_seed = int(np.random.SeedSequence([epoch_seed, distributed.rank()]).generate_state(1)[0])
    generator = torch.Generator().manual_seed(epoch_seed)
    return DataLoader(
        dataset,
        batch_size=max(1, config.train.batch_size // config.train.samples_per_volume),
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=config.train.num_workers,
        generator=generator,
        persistent_workers=False,
    )
