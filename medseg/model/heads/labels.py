"""``output.kind: labels``: softmax over classes, argmax gives the label (the default head)."""

from __future__ import annotations

from typing import Literal

import torch

from medseg.config import OutputOptions
from medseg.model.heads.base import OutputHead, register_head


class LabelsOptions(OutputOptions):
    """``output: {kind: labels}`` (no options)."""

    kind: Literal["labels"] = "labels"


@register_head("labels", LabelsOptions)
class SoftmaxLabels(OutputHead):
    """Softmax over classes; argmax gives the label (class index -> label value of the package).

    Shapes: logits ``(B, C, *spatial)`` -> probabilities ``(B, C, *spatial)`` -> labels ``(B, *spatial)``.
    """

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.float(), dim=1)

    def to_labels(self, probabilities: torch.Tensor) -> torch.Tensor:
        return self.index_to_value(torch.argmax(probabilities, dim=1))

    def logits_to_labels(self, logits: torch.Tensor) -> torch.Tensor:
        index = torch.argmax(logits, dim=1)  # softmax is monotonic: no need to compute it
        return index if list(self.labels) == list(range(len(self.labels))) else self.index_to_value(index)

    def probability_names(self) -> list[str]:
        return list(self.labels.values())

    def background_probabilities(self, channels: int) -> torch.Tensor:
        out = torch.zeros(channels)
        out[0] = 1.0  # label 0 (background) is always the first class
        return out


__all__ = ["LabelsOptions", "SoftmaxLabels"]
