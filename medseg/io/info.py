"""What an image is (``medseg info``): shape, voxel size, orientation, affine, stored dtype, intensity range."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medseg.io.image_io import read_image


def image_facts(path: Path) -> dict[str, Any]:
    """JSON-able facts of an image or label map (NaN/inf voxels are counted, the range is over the finite ones).

    Raises:
        MedsegInputError: the file is missing or not a readable image (one line).
    """
    array, geometry = read_image(path, "image", allow_channels=True, check_finite=False)
    finite = np.isfinite(array)
    values = array[finite] if not finite.all() else array
    stored_dtype = str(geometry.nifti_header.get_data_dtype()) if geometry.nifti_header is not None else str(array.dtype)
    return {
        "file": str(path),
        **geometry.to_dict(),
        "channels": int(array.shape[3]) if array.ndim == 4 else 1,
        "dtype": stored_dtype,
        "min": float(np.min(values)) if values.size else float("nan"),
        "max": float(np.max(values)) if values.size else float("nan"),
        "mean": float(np.mean(values)) if values.size else float("nan"),
        "non_finite_voxels": int(array.size - np.count_nonzero(finite)),
    }


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
    lines.append(f"qform/sform: {facts['qform_code']}/{facts['sform_code']}")
    lines.append("affine:")
    lines += ["  " + "  ".join(f"{v:10.4f}" for v in row) for row in facts["affine"]]
    return lines


__all__ = ["format_facts", "image_facts"]
