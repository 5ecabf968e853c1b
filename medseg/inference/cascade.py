"""Two-model cascade: a coarse localiser finds the region of interest, the fine model segments only that box.

The localiser is an ordinary model package (usually a small network at a coarse voxel size) stored inside
the fine model's package (subfolder ``localiser``, named by ``roi.localiser`` in ``medseg.json``), so a
cascade ships as one folder. Prediction of a case:

1. the localiser predicts the whole image (its own preprocessing, restored to the input grid);
2. its ``roi.labels`` voxels (largest connected component, if asked) give a bounding box in the *input's
   voxel grid*, grown by ``roi.margin_mm`` on each side;
3. the input is cropped to that box (an exact voxel subset; the affine is shifted to the box's corner) and
   the fine model predicts it with its own preprocessing and geometry restore;
4. the box's probabilities are pasted into a full-size volume that is background elsewhere, and the output
   head turns that into labels (post-processing, e.g. largest components, sees the whole volume).

Crop and paste are index operations in the input grid, so the output keeps the input's geometry exactly.
If the localiser finds nothing, the whole image is predicted (with a warning): missing an organ is worse
than spending the time.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.data import MetaTensor

from medseg.config import RoiConfig
from medseg.io.geometry import Geometry
from medseg.progress import console
from medseg.transforms.loading import to_metatensor
from medseg.transforms.roi import Box, roi_box

if TYPE_CHECKING:
    from medseg.inference.predictor import Predictor


def cropped_geometry(geometry: Geometry, box: Box) -> Geometry:
    """Geometry of the sub-volume ``box`` of an image: same axes and voxel size, origin at the box's corner."""
    start = np.array([s.start for s in box] + [1.0])
    affine = geometry.affine.copy()
    affine[:, 3] = geometry.affine @ start
    shape = tuple(s.stop - s.start for s in box)
    return Geometry(shape, affine, geometry.qform_code, geometry.sform_code, None, geometry.source)


class RoiCascade:
    """Localise, crop, predict, paste (see the module docstring).

    Args:
        roi: the package's ``roi`` section.
        localiser: a :class:`~medseg.inference.predictor.Predictor` of the localiser package.
    """

    def __init__(self, roi: RoiConfig, localiser: Predictor) -> None:
        self.roi = roi
        self.localiser = localiser

    def box(self, image: MetaTensor, geometry: Geometry) -> Box | None:
        """The ROI box of ``image`` in its own voxel grid, or ``None`` when the localiser finds nothing."""
        labels = self.localiser.predict_image(image, geometry).labels
        return roi_box(np.isin(labels, self.roi.labels), geometry.spacing, self.roi.margin_mm, self.roi.largest_component)

    def probabilities(
        self, predictor: Predictor, image: MetaTensor, geometry: Geometry
    ) -> tuple[torch.Tensor, dict[str, float], dict[str, Any]]:
        """``(P, I, J, K)`` probabilities of the fine model in the input grid (background outside the box)."""
        t0 = time.perf_counter()
        box = self.box(image, geometry)
        localise = time.perf_counter() - t0
        if box is None:
            console.print(f"[yellow]{geometry.source or 'image'}: the localiser found no region of interest; predicting the whole image[/]")
            probs, timings = predictor.whole_image_probabilities(image, geometry)
            return probs, {"localise": localise, **timings}, {"roi_box": None}
        sub_geometry = cropped_geometry(geometry, box)
        sub_image = to_metatensor(image.as_tensor()[(slice(None), *box)].numpy(), sub_geometry)
        sub_probs, timings = predictor.whole_image_probabilities(sub_image, sub_geometry)
        background = predictor.head.background_probabilities(sub_probs.shape[0]).to(sub_probs)
        full = background.view(-1, 1, 1, 1).expand(-1, *geometry.shape[:3]).clone()
        full[(slice(None), *box)] = sub_probs
        return full, {"localise": localise, **timings}, {"roi_box": [[s.start, s.stop] for s in box]}
