"""Per-modality contribution of a multi-modal model: drop one modality at inference, measure the Dice change.

A dropped modality is replaced, after the package's intensity preprocessing, by a constant (0 by
default: "no signal" after min-max scaling, the mean after a z-score). The network is not retrained, so
the Dice drop says how much *this trained model* relies on that image, not how well a model trained
without it would do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

from medseg.inference.predictor import Predictor
from medseg.io.image_io import read_image
from medseg.metrics import dice
from medseg.model.package import ModelPackage


class ModalityDropPredictor(Predictor):
    """A :class:`Predictor` that replaces input channel ``drop`` by ``fill`` after preprocessing.

    Example:
        >>> predictor = ModalityDropPredictor(package, torch.device("cpu"))  # doctest: +SKIP
        >>> predictor.drop = 3  # e.g. without the water image  # doctest: +SKIP
        >>> predictor.predict_files(files).labels  # doctest: +SKIP
    """

    drop: int | None = None
    fill: float = 0.0

    def preprocess(self, image: MetaTensor) -> MetaTensor:
        """Base preprocessing, then channel ``drop`` (if set) becomes the constant ``fill``."""
        out = super().preprocess(image)
        if self.drop is not None:
            if not 0 <= self.drop < out.shape[0]:
                raise ValueError(f"drop must be a channel index in [0, {out.shape[0]}), got {self.drop}")
            out = out.clone()
            out[self.drop] = self.fill
        return out


def modality_contributions(
    package: ModelPackage,
    cases: Sequence[dict[str, Any]],
    device: torch.device | str = "cpu",
    fill: float = 0.0,
    **predictor_options: Any,
) -> list[dict[str, Any]]:
    """Dice of every case with all modalities and with each one dropped.

    Args:
        package: a loaded multi-modal model package.
        cases: ``{"case": name, "image": [path per modality], "label": path}`` (a layout's cases).
        device: where the network runs.
        fill: value of a dropped channel after preprocessing.
        predictor_options: ``overlap``, ``sw_batch_size``, ``tta`` for the :class:`Predictor`.

    Returns:
        One row per case and condition: ``{"case", "dropped" ("none" or the modality name), "dice_<label>"
        per foreground label, "dice_mean"}`` (Dice in the input geometry, against the case's label).
    """
    predictor = ModalityDropPredictor(package, torch.device(device), **predictor_options)
    predictor.fill = fill
    names = package.manifest.modalities
    labels = [v for v in package.manifest.labels if v != 0]
    rows = []
    for case in cases:
        image, geometry = predictor.load(case["image"])
        reference, _ = read_image(case["label"], "label")
        for drop in [None, *range(len(names))]:
            predictor.drop = drop
            prediction = predictor.predict_image(image, geometry)
            scores = dice(prediction.labels, reference, labels)
            row: dict[str, Any] = {"case": case["case"], "dropped": "none" if drop is None else names[drop]}
            row.update({f"dice_{package.manifest.labels[k]}": v for k, v in scores.items()})
            row["dice_mean"] = float(np.mean(list(scores.values())))
            rows.append(row)
    return rows


def contribution_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean Dice per condition and its change from "none" dropped: ``[{"dropped", "dice", "change"}]``."""
    conditions = list(dict.fromkeys(r["dropped"] for r in rows))
    mean = {c: float(np.mean([r["dice_mean"] for r in rows if r["dropped"] == c])) for c in conditions}
    base = mean.get("none", float("nan"))
    return [{"dropped": c, "dice": mean[c], "change": mean[c] - base} for c in conditions]

