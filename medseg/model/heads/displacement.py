"""``output.kind: displacement``: registration networks (MICDIR, VoxelMorph) that return a displacement field.

Such a package gives no probabilities or label maps: anything that asks it for a segmentation gets a clear
error pointing to ``medseg register`` (:mod:`medseg.inference.registration` runs it).
"""

from __future__ import annotations

from typing import Literal

import torch

from medseg.config import OutputOptions
from medseg.errors import MedsegModelError
from medseg.model.heads.base import OutputHead, register_head


class DisplacementOptions(OutputOptions):
    """``output: {kind: displacement}`` (no options)."""

    kind: Literal["displacement"] = "displacement"


@register_head("displacement", DisplacementOptions)
class DisplacementHead(OutputHead):
    """Registration networks: a dict with a displacement field, no probabilities or labels."""

    MESSAGE = "this model package registers image pairs (output kind 'displacement'): use `medseg register`"
    segments = False
    categorical = False

    def check_segmentation(self) -> None:
        raise MedsegModelError(self.MESSAGE)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        raise MedsegModelError(self.MESSAGE)

    def to_labels(self, probabilities: torch.Tensor) -> torch.Tensor:
        raise MedsegModelError(self.MESSAGE)

    def probability_names(self) -> list[str]:
        return []

    def training_target(self, label: torch.Tensor) -> torch.Tensor:
        return label


__all__ = ["DisplacementHead", "DisplacementOptions"]
