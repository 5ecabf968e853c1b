"""Output heads for nested classes (BraTS WT ⊇ TC ⊇ ET), one per head of
:class:`~medseg.networks.nested_resunet.NestedResUNet` (this module: ``nested`` and the shared base;
``nested_softmax.py`` and ``regions.py`` beside it):

- ``"nested"`` (multi-level head, network ``output_kind == "nested"``): the network returns K region logits
  ``s (z - b_k)``; probabilities are their sigmoids ``p_k`` (WT, TC, ET), non-increasing in k. The predictor
  resamples them with *linear* interpolation only (a convex combination of ordered vectors stays ordered; cubic
  or sinc weights, which can be negative, would not), so after geometry restoration they are still ordered.
  Decoding: level = number of regions with ``p_k > threshold`` (default 0.5), then level -> BraTS label.
- ``"nested_softmax"`` (softmax head over the levels, network ``output_kind == "labels"``): softmax over
  background, oedema, necrosis/NCR, enhancing; decoding by argmax. The baseline of the claim experiment.
- ``"regions"`` (independent sigmoid head, network ``output_kind == "regions"``): K independent region
  probabilities; masks ``p_k > threshold`` may violate nesting; labels resolve violations innermost-first
  (nnU-Net's region convention), the ``regions`` extra output keeps the raw masks.

All three map stored labels to levels for training (0 background, 1 oedema, 2 necrosis, 3 enhancing; the
convention of each label map is detected from its values, which is exact: labels 0, 1, 2 mean the same in both
conventions), write BraTS labels in the convention of the package's label set (``{0, 1, 2, 4}``: 2018,
``{0, 1, 2, 3}``: 2023), score validation on the WT/TC/ET regions, and offer the extra output ``regions``
(``medseg predict --extra regions=PATH``: a ``(I, J, K, 3)`` uint8 mask stack WT, TC, ET).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from medseg.config import OutputOptions
from medseg.data.brats_labels import (
    REGION_NAMES,
    convention_of_labels,
    labels_to_levels,
    labels_to_regions,
    levels_to_labels,
)
from medseg.errors import MedsegConfigError
from medseg.io.image_io import Kind
from medseg.metrics.brats import region_counts
from medseg.metrics.dice import dice_from_counts
from medseg.model.heads.base import OutputHead, ValidationScorer, register_head


class NestedOptions(OutputOptions):
    """``output: {kind: nested, threshold: 0.5}``: a voxel is inside region k when ``p_k > threshold``."""

    kind: Literal["nested"] = "nested"
    threshold: float = Field(0.5, gt=0.0, lt=1.0)


class RegionDiceScorer(ValidationScorer):
    """Per-case mean Dice of the WT, TC and ET regions of label maps; ``val_score`` is their mean.

    Reference and prediction are mapped to regions each by its own (detected) convention.
    """

    def __init__(self) -> None:
        self.counts: list[np.ndarray] = []

    def update(self, prediction: torch.Tensor, reference: torch.Tensor) -> None:
        pred = labels_to_regions(prediction.detach().cpu().numpy(), "auto")
        ref = labels_to_regions(reference.detach().cpu().numpy(), "auto")
        self.counts.append(region_counts(pred, ref))

    def result(self) -> dict[str, float]:
        scores = dice_from_counts(np.stack(self.counts))  # (cases, regions)
        out = {f"val_dice_{name}": float(scores[:, k].mean()) for k, name in enumerate(REGION_NAMES)}
        out["val_score"] = float(scores.mean())
        return out


class NestedBase(OutputHead):
    """Shared behaviour of the nested-class heads (see the module docstring).

    Args:
        labels: the package's labels, a BraTS label set (``{0, 1, 2, 4}`` or ``{0, 1, 2, 3}``).
        threshold: probability above which a voxel is inside a region (region heads; default 0.5).
    """

    def __init__(self, labels: dict[int, str], threshold: float = 0.5, **options: Any) -> None:
        super().__init__(labels, **options)
        try:
            self.convention = convention_of_labels(self.labels)
        except ValueError as exc:
            raise MedsegConfigError(f"output.kind '{self.kind}': {exc}") from None
        self.threshold = float(threshold)

    def training_target(self, label: torch.Tensor) -> torch.Tensor:
        """Stored BraTS labels -> levels 0..3 (same shape and dtype)."""
        return labels_to_levels(label, "auto").to(label.dtype)

    def levels_to_labels(self, levels: torch.Tensor) -> torch.Tensor:
        return levels_to_labels(levels, self.convention)

    def validation_scorer(self) -> ValidationScorer:
        return RegionDiceScorer()

    def extra_outputs(self) -> dict[str, str]:
        return {"regions": "WT, TC, ET masks (uint8 0/1, channels last)"}

    def extra_output(self, name: str, probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, Kind]:
        if name != "regions":
            return super().extra_output(name, probabilities, labels)
        return labels_to_regions(labels, self.convention, axis=-1).astype(np.uint8), "label"

    def describe(self) -> str:
        enhancing = 4 if self.convention == "2018" else 3
        return f"output {self.kind}: BraTS {self.convention} labels (enhancing = {enhancing}); stored labels read by their own convention"


@register_head("nested", NestedOptions)
class NestedRegions(NestedBase):
    """Multi-level head: K nested region logits -> sigmoid probabilities; level = count of ``p_k > t``.

    Shapes: logits ``(B, K, *spatial)`` -> probabilities ``(B, K, *spatial)`` (WT, TC, ET) -> labels
    ``(B, *spatial)``.

    Example:
        >>> head = NestedRegions({0: "background", 1: "necrosis", 2: "oedema", 4: "enhancing"})
        >>> logits = torch.tensor([[-1.0, -2.0, -3.0], [2.0, 1.0, -1.0]]).T.reshape(1, 3, 2)
        >>> head.to_labels(head.probabilities(logits)).tolist()
        [[0, 1]]
    """

    categorical = False  # independent sigmoid regions

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits.float())

    def to_labels(self, probabilities: torch.Tensor) -> torch.Tensor:
        return self.levels_to_labels((probabilities > self.threshold).sum(dim=1))

    def probability_names(self) -> list[str]:
        return list(REGION_NAMES)


__all__ = ["NestedBase", "NestedOptions", "NestedRegions", "RegionDiceScorer"]
