"""``output.kind: nested_softmax``: softmax over the BraTS levels, argmax decoding (the nested head's baseline).

Network ``output_kind == "labels"`` (a plain softmax head), trained and scored on the WT/TC/ET regions like
the multi-level head (see :mod:`medseg.model.heads.nested`).
"""

from __future__ import annotations

from typing import Literal

import torch

from medseg.config import OutputOptions
from medseg.data.brats_labels import LEVEL_NAMES
from medseg.model.heads.base import register_head
from medseg.model.heads.nested import NestedBase


class NestedSoftmaxOptions(OutputOptions):
    """``output: {kind: nested_softmax}`` (no options)."""

    kind: Literal["nested_softmax"] = "nested_softmax"


@register_head("nested_softmax", NestedSoftmaxOptions)
class SoftmaxLevels(NestedBase):
    """Softmax head over the levels (background, oedema, necrosis/NCR, enhancing); argmax decoding.

    Shapes: logits ``(B, 4, *spatial)`` -> probabilities ``(B, 4, *spatial)`` -> labels ``(B, *spatial)``.
    """

    network_kinds = ("labels",)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.float(), dim=1)

    def to_labels(self, probabilities: torch.Tensor) -> torch.Tensor:
        return self.levels_to_labels(torch.argmax(probabilities, dim=1))

    def probability_names(self) -> list[str]:
        return list(LEVEL_NAMES)


__all__ = ["NestedSoftmaxOptions", "SoftmaxLevels"]
