"""Dataset fingerprint: what the planner needs to know about every training case, read once.

Per case: stored shape, spacing and orientation, the shape and spacing in the training orientation (RAS),
foreground intensity percentiles per modality, and per label its volume (ml), voxel count and number of
connected components. Over the dataset: foreground intensity statistics per modality from pooled samples
(as nnU-Net v2's fingerprint extractor: up to 10 000 foreground voxels per case, seeded), and the class
frequencies. Written as ``fingerprint.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from medseg.data.layouts import Case
from medseg.errors import MedsegInputError
from medseg.io.atomic import write_json
from medseg.io.image_io import read_image, read_modalities

#: foreground voxels sampled per case and modality for the pooled intensity statistics
SAMPLES_PER_CASE = 10_000
PERCENTILES = (0.5, 50.0, 99.5)


@dataclass
class CaseFingerprint:
    """One case. ``shape_ras`` / ``spacing_ras``: along R, A, S (the axes training resamples in)."""

    case: str
    shape: list[int]
    spacing: list[float]
    orientation: str
    shape_ras: list[int]
    spacing_ras: list[float]
    #: per modality ``{"p0.5", "p50", "p99.5", "mean", "std", "min"}`` over the foreground (label > 0)
    intensity: list[dict[str, float]]
    #: per label value (str): ``{"voxels", "volume_ml", "components"}``; absent labels have 0 voxels
    labels: dict[str, dict[str, float]]


@dataclass
class Fingerprint:
    """A whole dataset: modalities, label names, the cases, pooled foreground intensity per modality."""

    source: str
    modalities: list[str]
    labels: dict[int, str]
    cases: list[CaseFingerprint]
    intensity: list[dict[str, float]] = field(default_factory=list)
    #: share of all labelled voxels per label value (background included)
    class_frequency: dict[str, float] = field(default_factory=dict)
    #: share of cases in which each non-zero label is present
    label_presence: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["labels"] = {str(k): v for k, v in self.labels.items()}
        return out

    def save(self, path: str | Path) -> Path:
        return write_json(Path(path), self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Fingerprint:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        raw["labels"] = {int(k): v for k, v in raw["labels"].items()}
        raw["cases"] = [CaseFingerprint(**c) for c in raw["cases"]]
        return cls(**raw)

    def spacings(self) -> np.ndarray:
        """``(cases, 3)`` spacing in RAS axis order (mm)."""
        return np.array([c.spacing_ras for c in self.cases], dtype=float)

    def shapes(self) -> np.ndarray:
        """``(cases, 3)`` shape in RAS axis order (voxels)."""
        return np.array([c.shape_ras for c in self.cases], dtype=float)


def ras_permutation(affine: np.ndarray) -> list[int]:
    """For each RAS axis, the voxel axis that runs along it (nibabel ``io_orientation``)."""
    world = nib.orientations.io_orientation(affine)[:, 0].astype(int)  # voxel axis i -> world axis
    order = [0, 0, 0]
    for voxel_axis, world_axis in enumerate(world):
        order[world_axis] = voxel_axis
    return order


def _stats(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {f"p{p:g}": 0.0 for p in PERCENTILES} | {"mean": 0.0, "std": 0.0, "min": 0.0}
    pct = np.percentile(values, PERCENTILES)
    return {f"p{p:g}": float(v) for p, v in zip(PERCENTILES, pct)} | {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
    }


def case_fingerprint(case: Case, labels: list[int], rng: np.random.Generator) -> tuple[CaseFingerprint, list[np.ndarray]]:
    """The fingerprint of one case and its sampled foreground intensities per modality.

    Images ``(C, I, J, K)`` and label ``(I, J, K)`` are read in their stored geometry; nothing is resampled.
    A case without a label map (registration images) has no label statistics; its foreground is the non-zero image.
    """
    images, geometry = read_modalities(case["image"])
    label = np.zeros(images.shape[1:], dtype=np.uint8)
    if case["label"] is not None:
        label, _ = read_image(case["label"], "label")
    if label.shape != images.shape[1:]:
        raise MedsegInputError(case["label"], f"shape {label.shape} differs from its image's {images.shape[1:]}")
    foreground = label > 0
    if not foreground.any():  # no label: intensities over the non-zero image (MR background is zero)
        foreground = np.any(images != 0, axis=0)
    samples, intensity = [], []
    for channel in images:
        values = channel[foreground]
        intensity.append(_stats(values))
        take = min(SAMPLES_PER_CASE, values.size)
        samples.append(rng.choice(values, take, replace=False) if take else values)
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    per_label = {}
    for value in labels if case["label"] is not None else []:
        mask = label == value
        voxels = int(mask.sum())
        components = int(ndimage.label(mask)[1]) if value != 0 and voxels else 0
        per_label[str(value)] = {"voxels": voxels, "volume_ml": voxels * voxel_ml, "components": components}
    order = ras_permutation(geometry.affine)
    spacing = [float(s) for s in geometry.spacing]
    shape = [int(s) for s in geometry.shape]
    fp = CaseFingerprint(
        case=case["case"],
        shape=shape,
        spacing=spacing,
        orientation=geometry.orientation,
        shape_ras=[shape[a] for a in order],
        spacing_ras=[spacing[a] for a in order],
        intensity=intensity,
        labels=per_label,
    )
    return fp, samples


def label_values(case_labels: list[np.ndarray] | None, names: dict[int, str] | None) -> list[int]:
    """Label values to count: the dataset's declared labels, else the values found."""
    if names:
        return sorted(names)
    found: set[int] = {0}
    for array in case_labels or []:
        found |= set(np.unique(array).tolist())
    return sorted(found)


def fingerprint_cases(
    cases: list[Case], source: str, modalities: list[str], labels: dict[int, str] | None = None, seed: int = 0,
    unlabelled: bool = False,
) -> Fingerprint:
    """Fingerprint the labelled ``cases`` (unlabelled ones are skipped, unless ``unlabelled``: registration images).

    ``labels``: declared label names (e.g. from ``dataset.json``); without them the values found in the
    label maps are used, named ``label_N``.
    """
    labelled = [c for c in cases if c["label"] is not None]
    if not labelled and not unlabelled:
        raise MedsegInputError(source, "has no labelled cases to plan from")
    if not labels:
        found = label_values([read_image(c["label"], "label")[0] for c in labelled], None)
        labels = {v: ("background" if v == 0 else f"label_{v}") for v in found}
    rng = np.random.default_rng(seed)
    fps: list[CaseFingerprint] = []
    pooled: list[list[np.ndarray]] = [[] for _ in modalities]
    for case in cases if unlabelled else labelled:
        fp, samples = case_fingerprint(case, sorted(labels), rng)
        if len(samples) != len(modalities):
            raise MedsegInputError(case["image"][0], f"case '{case['case']}' has {len(samples)} channel(s), the dataset {len(modalities)}")
        fps.append(fp)
        for store, values in zip(pooled, samples):
            store.append(values)
    intensity = [_stats(np.concatenate(store)) for store in pooled]
    with_labels = [fp for fp in fps if fp.labels]
    totals = {str(v): sum(fp.labels[str(v)]["voxels"] for fp in with_labels) for v in sorted(labels)}
    grand = max(sum(totals.values()), 1)
    presence = {str(v): sum(fp.labels[str(v)]["voxels"] > 0 for fp in with_labels) / max(len(with_labels), 1)
                for v in sorted(labels) if v != 0}
    return Fingerprint(
        source=source,
        modalities=list(modalities),
        labels=dict(labels),
        cases=fps,
        intensity=intensity,
        class_frequency={k: n / grand for k, n in totals.items()},
        label_presence=presence,
    )


__all__ = ["CaseFingerprint", "Fingerprint", "case_fingerprint", "fingerprint_cases", "ras_permutation"]
