"""Region evaluation of BraTS-style predictions (``medseg evaluate --regions brats``).

Each file is read as either a label map (BraTS labels, convention detected from its values: 4 = 2018 (BraTS 2017-2021), 3 = 2023;
neither present: the conventions agree on 0, 1, 2, so nothing depends on the choice) or a stack of K region
masks, channels last ``(I, J, K, 3)`` = WT, TC, ET (what ``medseg predict --extra regions=...`` writes and what
region-based tools produce). Both sides are turned into WT/TC/ET masks and scored per region with the spine's
metrics (:func:`medseg.metrics.scores.evaluate_arrays`: Dice, IoU, HD95, surface Dice, volumes; empty-mask
policy of :mod:`medseg.metrics.surface`: an ET empty in both scores Dice 1, HD95 0).

Nesting violations (:func:`medseg.metrics.brats.nesting_violations`) are counted on the prediction's masks: the
voxels of a region outside its parent (TC outside WT on the TC row, ET outside TC on the ET row; WT has no
parent). Masks derived from a label map nest by definition (regions are unions of labels), so for label-map
predictions the count is 0 by construction; only mask stacks can show violations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.brats_labels import REGION_NAMES, detect_convention, labels_to_regions
from medseg.errors import MedsegInputError
from medseg.io.geometry import Geometry
from medseg.io.image_io import read_image
from medseg.metrics.brats import nesting_violations
from medseg.metrics.scores import METRICS, evaluate_arrays

REGION_SETS = ("brats",)
FIELDS = ("case", "label", *METRICS, "nesting_violations")


@dataclass
class RegionFile:
    """One file read as WT/TC/ET masks.

    Attributes:
        regions: ``(3, I, J, K)`` bool.
        geometry: the file's geometry.
        source: ``"BraTS 2018 labels"``, ``"BraTS 2023 labels"``, ``"BraTS labels (no enhancing label)"`` or
            ``"region masks"``.
    """

    regions: np.ndarray
    geometry: Geometry
    source: str


def read_regions(path: str | Path) -> RegionFile:
    """Read a BraTS label map or a ``(I, J, K, 3)`` WT/TC/ET mask stack as region masks.

    Raises:
        MedsegInputError: values that are neither BraTS labels nor 0/1 masks, or a wrong channel count.
    """
    array, geometry = read_image(path, "label", allow_channels=True)
    if array.ndim == 4:
        if array.shape[-1] != len(REGION_NAMES) or array.max() > 1:
            raise MedsegInputError(
                path, f"a region-mask stack needs {len(REGION_NAMES)} channels of 0/1 (WT, TC, ET); got shape {array.shape}, max {array.max()}"
            )
        return RegionFile(np.moveaxis(array.astype(bool), -1, 0), geometry, "region masks")
    try:
        report = detect_convention(array)
    except MedsegInputError as exc:
        raise MedsegInputError(path, exc.problem) from None
    source = "BraTS labels (no enhancing label)" if report.ambiguous else f"BraTS {report.convention} labels"
    return RegionFile(labels_to_regions(array, report.convention), geometry, source)


def evaluate_region_arrays(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], tolerance_mm: float = 1.0, case: str = "case"
) -> list[dict[str, Any]]:
    """One row per region (WT, TC, ET): the spine's metrics plus the prediction's nesting violations.

    Args:
        pred, ref: ``(3, *spatial)`` region masks (WT, TC, ET).
    """
    if pred.shape != ref.shape or pred.shape[0] != len(REGION_NAMES):
        raise ValueError(f"expected two ({len(REGION_NAMES)}, *spatial) stacks, got {pred.shape} and {ref.shape}")
    violations = (0, *nesting_violations(pred).per_pair)
    rows = []
    for name, p, r, v in zip(REGION_NAMES, pred, ref, violations, strict=True):
        row = evaluate_arrays(p.astype(np.uint8), r.astype(np.uint8), spacing, [1], tolerance_mm, case)[0]
        rows.append({**row, "label": name, "nesting_violations": int(v)})
    return rows


def summarize_regions(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation per region over cases (``case`` = ``mean`` / ``std``), WT, TC, ET order."""
    out = []
    for name in REGION_NAMES:
        subset = [r for r in rows if r["label"] == name]
        for stat, fn in (("mean", np.mean), ("std", np.std)):
            out.append({"case": stat, "label": name, **{m: float(fn([r[m] for r in subset])) for m in FIELDS[2:]}})
    return out


def evaluate_region_cases(
    pairs: Sequence[tuple[str, Path | None, Path]], region_set: str = "brats", tolerance_mm: float = 1.0
) -> tuple[list[dict[str, Any]], list[str]]:
    """Score matched ``(case, prediction, reference)`` files by region; a prediction ``None`` (missing case)
    is scored as empty masks.

    Returns:
        ``(rows, notes)``: per-case rows (see :func:`evaluate_region_arrays`) and one-line notes stating how the
        files were read (conventions detected) and the violation count.
    """
    if region_set not in REGION_SETS:
        raise MedsegInputError(None, f"--regions: unknown region set '{region_set}'; known: {', '.join(REGION_SETS)}")
    rows: list[dict[str, Any]] = []
    sources: dict[str, dict[str, int]] = {"reference": {}, "prediction": {}}
    for case, pred_path, ref_path in pairs:
        ref = read_regions(ref_path)
        if pred_path is None:
            pred = RegionFile(np.zeros_like(ref.regions), ref.geometry, "")
        else:
            pred = read_regions(pred_path)
            problem = ref.geometry.mismatch(pred.geometry, atol=1e-4)
            if problem is not None:
                raise MedsegInputError(pred_path, f"geometry does not match the reference {Path(ref_path).name}: {problem}")
        for side, item in (("prediction", pred), ("reference", ref)):
            if item.source:
                sources[side][item.source] = sources[side].get(item.source, 0) + 1
        rows += evaluate_region_arrays(pred.regions, ref.regions, ref.geometry.spacing, tolerance_mm, case)
    notes = [
        f"{side}: " + ", ".join(f"{source} ({n} case{'s' if n > 1 else ''})" for source, n in sorted(found.items()))
        for side, found in sources.items()
    ]
    per_region = {name: sum(r["nesting_violations"] for r in rows if r["label"] == name) for name in REGION_NAMES[1:]}
    violating = len({r["case"] for r in rows if r["nesting_violations"]})
    if "region masks" in sources["prediction"]:
        tc, et = per_region.values()
        notes.append(f"nesting violations: TC outside WT {tc} voxel(s), ET outside TC {et} voxel(s), in {violating} case(s)")
    else:
        notes.append("nesting violations: 0 (predictions are label maps, whose regions nest by definition)")
    return rows, notes
