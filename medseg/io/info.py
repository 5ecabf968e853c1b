"""What an image is (``medseg info``): shape, voxel size, orientation, affine, stored dtype, intensity range;
for a label map its label values with voxel counts and volumes; for a DICOM series folder the series read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medseg.io.geometry import Geometry
from medseg.io.image_io import read_image

#: an integer-valued volume with at most this many distinct values is shown as a label map
MAX_LABELS = 64


def image_facts(path: Path, dicom: bool = False) -> dict[str, Any]:
    """JSON-able facts of an image or label map, or (``dicom``) of the DICOM series of a folder
    (NaN/inf voxels are counted, the range is over the finite ones).

    Raises:
        MedsegInputError: the file is missing or not a readable image (one line).
    """
    series = None
    if dicom:
        from medseg.io.dicom import read_dicom_series

        array, geometry, series = read_dicom_series(path)
    else:
        array, geometry = read_image(path, "image", allow_channels=True, check_finite=False)
    finite = np.isfinite(array)
    values = array[finite] if not finite.all() else array
    stored_dtype = str(geometry.nifti_header.get_data_dtype()) if geometry.nifti_header is not None else str(array.dtype)
    facts = {
        "file": str(path),
        **geometry.to_dict(),
        "channels": int(array.shape[3]) if array.ndim == 4 else 1,
        "dtype": stored_dtype,
        "min": float(np.min(values)) if values.size else float("nan"),
        "max": float(np.max(values)) if values.size else float("nan"),
        "mean": float(np.mean(values)) if values.size else float("nan"),
        "non_finite_voxels": int(array.size - np.count_nonzero(finite)),
        "labels": label_counts(array, geometry) if array.ndim == 3 and finite.all() else None,
    }
    if series is not None:
        facts["dicom"] = series.summary()
    return facts


def label_counts(array: np.ndarray, geometry: Geometry) -> dict[str, dict[str, float]] | None:
    """``{value: {"voxels", "volume_ml"}}`` when ``array`` looks like a label map (integer values, at most
    :data:`MAX_LABELS` of them), else ``None``."""
    sample = array.ravel()[:: max(1, array.size // 100_000)]  # a cheap look first: CT/MR volumes stop here
    if len(np.unique(sample)) > MAX_LABELS or not np.all(np.mod(sample, 1) == 0):
        return None
    values, counts = np.unique(array, return_counts=True)
    if len(values) > MAX_LABELS or not np.all(np.mod(values, 1) == 0):
        return None
    ml = float(np.prod(geometry.spacing)) / 1000.0
    return {str(int(v)): {"voxels": int(n), "volume_ml": round(int(n) * ml, 4)} for v, n in zip(values, counts)}


def format_facts(facts: dict[str, Any]) -> list[str]:
    """The lines ``medseg info`` prints."""
    lines = [
        f"file:        {facts['file']}",
        f"shape:       {tuple(facts['shape'])}" + (f" x {facts['channels']} channels" if facts["channels"] > 1 else ""),
        f"spacing:     {' x '.join(f'{s:.4g}' for s in facts['spacing_mm'])} mm",
        f"orientation: {facts['orientation']}",
        f"dtype:       {facts['dtype']}",
        f"range:       [{facts['min']:.6g}, {facts['max']:.6g}] (mean {facts['mean']:.6g})",
    ]
    if facts["non_finite_voxels"]:
        lines.append(f"non-finite:  {facts['non_finite_voxels']} NaN/inf voxels (range over the finite ones)")
    if facts.get("dicom"):
        d = facts["dicom"]
        lines.append(f"dicom:       series {d['series_instance_uid']} '{d['description']}' ({d['modality']}, {d['slices']} slices)")
    if facts.get("labels"):
        lines.append("labels:      value  voxels  volume (ml)")
        lines += [f"  {value:>16}  {c['voxels']:>6}  {c['volume_ml']:.4g}" for value, c in facts["labels"].items()]
    lines.append(f"qform/sform: {facts['qform_code']}/{facts['sform_code']}")
    lines.append("affine:")
    lines += ["  " + "  ".join(f"{v:10.4f}" for v in row) for row in facts["affine"]]
    return lines


__all__ = ["format_facts", "image_facts"]
