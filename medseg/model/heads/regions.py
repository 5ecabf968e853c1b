"""``output.kind: regions``: independent sigmoid region head (network ``output_kind == "regions"``).

Masks ``p_k > threshold`` may violate nesting; labels resolve violations innermost-first (nnU-Net's region
convention) and the ``regions`` extra output keeps the raw masks (see :mod:`medseg.model.heads.nested`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from medseg.config import OutputOptions
from medseg.data.brats_labels import REGION_NAMES, regions_to_levels
from medseg.io.image_io import Kind
from medseg.model.heads.base import register_head
from medseg.model.heads.nested import NestedBase


class RegionsOptions(OutputOptions):
    """``output: {kind: regions, threshold: 0.5}``."""

    kind: Literal["regions"] = "regions"
    threshold: float = Field(0.5, gt=0.0, lt=1.0)


@register_head("regions", RegionsOptions)
class IndependentRegions(NestedBase):
    """Independent sigmoid region head: masks ``p_k > t`` (may violate nesting); labels innermost-first.

    The ``regions`` extra output writes the raw thresholded masks, violations included.
    """

    categorical = False  # independent sigmoid regions

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits.float())

    def to_labels(self, probabilities: torch.Tensor) -> torch.Tensor:
        return self.levels_to_labels(regions_to_levels(probabilities > self.threshold, axis=1))

    def probability_names(self) -> list[str]:
        return list(REGION_NAMES)

    def extra_output(self, name: str, probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, Kind]:
        if name != "regions":
            return super().extra_output(name, probabilities, labels)
        return (probabilities > self.threshold).astype(np.uint8), "label"


__all__ = ["IndependentRegions", "RegionsOptions"]
