"""H-DenseUNet's post-processing as an output head (``output.kind: liver_tumor``).

From the released code (``test.py``): the liver is ``p(liver) >= 0.5`` or ``p(tumour) >= 0.9``; its largest
connected component is kept and its holes filled; tumour is ``p(tumour) >= 0.9`` restricted to that liver,
holes filled. Nothing here is liver-specific: any organ label with a lesion label inside it works.

Example (pipeline YAML)::

    output: {kind: liver_tumor, liver_threshold: 0.5, tumour_threshold: 0.9}
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field
from scipy import ndimage

from medseg.config import OutputOptions
from medseg.errors import MedsegConfigError
from medseg.model.heads.base import register_head
from medseg.model.heads.labels import SoftmaxLabels
from medseg.transforms.roi import largest_component


class LiverTumorOptions(OutputOptions):
    """``output: {kind: liver_tumor, ...}`` (the defaults are the released code's; see :class:`LiverTumorLabels`)."""

    kind: Literal["liver_tumor"] = "liver_tumor"
    liver_label: int = 1
    tumour_label: int = 2
    thresholds: bool = True
    liver_threshold: float = Field(0.5, gt=0.0, le=1.0)
    liver_probability: Literal["liver", "foreground"] = "liver"
    tumour_threshold: float = Field(0.9, gt=0.0, le=1.0)
    largest_component: bool = True
    fill_holes: bool = True
    tumour_in_liver: bool = True


@register_head("liver_tumor", LiverTumorOptions)
class LiverTumorLabels(SoftmaxLabels):
    """Softmax probabilities -> organ/lesion labels with thresholds, largest component, hole filling.

    Options (``output`` section; the defaults are the released code's):
        liver_label / tumour_label: label values of the organ and the lesion (1, 2).
        thresholds: threshold the probabilities (code) instead of taking the argmax.
        liver_threshold: on the liver probability (0.5).
        liver_probability: ``"liver"`` = the liver class alone (code) or ``"foreground"`` = 1 - background.
        tumour_threshold: on the tumour probability (0.9).
        largest_component: keep the largest 26-connected liver component (code: on).
        fill_holes: fill enclosed holes of liver and tumour (code: on).
        tumour_in_liver: drop tumour outside the kept liver (code: on).

    Shapes: ``to_labels``: ``(B, P, I, J, K)`` -> ``(B, I, J, K)`` label values (computed on the CPU).
    """

    def __init__(
        self,
        labels: dict[int, str],
        liver_label: int = 1,
        tumour_label: int = 2,
        thresholds: bool = True,
        liver_threshold: float = 0.5,
        liver_probability: str = "liver",
        tumour_threshold: float = 0.9,
        largest_component: bool = True,
        fill_holes: bool = True,
        tumour_in_liver: bool = True,
    ) -> None:
        super().__init__(labels)
        values = list(self.labels)
        for name, value in (("liver_label", liver_label), ("tumour_label", tumour_label)):
            if value not in values or value == 0:
                raise MedsegConfigError(f"output.{name}: {value} is not a foreground label of {values}")
        self.liver, self.tumour = values.index(liver_label), values.index(tumour_label)
        self.liver_value, self.tumour_value = liver_label, tumour_label
        self.thresholds, self.liver_threshold, self.tumour_threshold = thresholds, liver_threshold, tumour_threshold
        self.liver_probability = liver_probability
        self.keep_largest, self.fill_holes, self.tumour_in_liver = largest_component, fill_holes, tumour_in_liver

    def masks(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw ``(liver incl. tumour, tumour)`` masks of one case's ``(P, *S)`` probabilities."""
        if not self.thresholds:
            winner = probs.argmax(0)
            tumour = winner == self.tumour
            return (winner == self.liver) | tumour, tumour
        tumour = probs[self.tumour] >= self.tumour_threshold
        liver_p = probs[self.liver] if self.liver_probability == "liver" else 1.0 - probs[0]
        return (liver_p >= self.liver_threshold) | tumour, tumour

    def postprocess(self, probs: np.ndarray) -> np.ndarray:
        """``(P, *S)`` probabilities of one case -> ``(*S)`` label values."""
        liver, tumour = self.masks(probs)
        if self.keep_largest:
            liver = largest_component(liver)
        if self.fill_holes:
            liver = ndimage.binary_fill_holes(liver)
        if self.tumour_in_liver:
            tumour = tumour & liver
        if self.fill_holes:
            tumour = ndimage.binary_fill_holes(tumour)
        out = np.zeros(liver.shape, dtype=np.int64)
        out[liver] = self.liver_value
        out[tumour] = self.tumour_value
        return out

    def to_labels(self, probabilities: torch.Tensor) -> torch.Tensor:
        cases = [torch.from_numpy(self.postprocess(p.float().cpu().numpy())) for p in probabilities]
        return torch.stack(cases).to(probabilities.device)
