"""Validation through the shipped predictor: the trainer scores checkpoints with the code ``medseg predict`` runs.

Each validation case is read in its own geometry (a cascade's fine model: cropped in that geometry to the box of
its reference ROI labels plus the margin, the box the H-DenseUNet code validates on), predicted by
:class:`~medseg.inference.predictor.Predictor` (preprocessing, the Gaussian window engine with the package's
TTA, head decoding, restore into the input grid) and scored against the stored label by the head's validation
scorer. So the validation Dice of a case is the Dice ``medseg predict`` + ``medseg evaluate`` give for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from torch import nn

from medseg.config import PipelineConfig
from medseg.data.layouts import Case
from medseg.inference.cascade import cropped_geometry
from medseg.inference.predictor import Predictor
from medseg.io.geometry import Geometry
from medseg.model.heads import OutputHead
from medseg.model.package import ModelManifest, ModelPackage
from medseg.transforms.loading import load_case_arrays, to_metatensor
from medseg.transforms.roi import roi_box


@dataclass
class ValidationCase:
    """One labelled case in its own geometry: image ``(C, I, J, K)``, label ``(I, J, K)`` (int64)."""

    name: str
    image: MetaTensor
    label: torch.Tensor
    geometry: Geometry


def load_validation_case(case: Case, config: PipelineConfig) -> ValidationCase:
    """Read a case (and crop it to its reference ROI box when the pipeline trains a cascade's fine model)."""
    image, label, geometry = load_case_arrays(case["image"], case["label"], config.data.modalities)
    assert label is not None
    reference = label.as_tensor()[0].long()
    if config.roi is not None:
        roi = config.roi
        box = roi_box(np.isin(reference.numpy(), roi.labels), geometry.spacing, roi.margin_mm, roi.largest_component)
        if box is not None:
            geometry = cropped_geometry(geometry, box)
            image = to_metatensor(image.as_tensor()[(slice(None), *box)].numpy(), geometry)
            reference = reference[box].contiguous()
    return ValidationCase(case["case"], image, reference, geometry)


class ValidationSet:
    """The validation cases, read once and kept when ``data.cache`` is on (else read at each validation)."""

    def __init__(self, config: PipelineConfig, cases: list[Case]) -> None:
        self.config, self.cases = config, cases
        self._cache: list[ValidationCase] | None = None

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self) -> Iterator[ValidationCase]:
        if self._cache is not None:
            yield from self._cache
            return
        loaded = []
        for case in self.cases:
            item = load_validation_case(case, self.config)
            loaded.append(item)
            yield item
        if self.config.data.cache:
            self._cache = loaded


def validation_predictor(network: nn.Module, manifest: ModelManifest, head: OutputHead, device: torch.device, run_dir: Path) -> Predictor:
    """A predictor of the live training ``network`` with the manifest it will be exported with (no localiser:
    validation crops cascades by the reference labels)."""
    return Predictor(ModelPackage(run_dir, manifest, network, head), device)


def predict_labels(predictor: Predictor, case: ValidationCase) -> torch.Tensor:
    """``(I, J, K)`` int64 labels of a validation case in its own geometry (what ``medseg predict`` writes)."""
    return torch.from_numpy(predictor.predict_image(case.image, case.geometry).labels.astype(np.int64))


__all__ = ["ValidationCase", "ValidationSet", "load_validation_case", "predict_labels", "validation_predictor"]
