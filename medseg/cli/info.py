"""``medseg info``: what an image is (shape, spacing, orientation, affine, dtype, intensity range)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer

from medseg.io.image_io import read_image


def info(
    file: Path = typer.Argument(..., help="Image or label map."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Print shape, voxel size, orientation code, affine, dtype and intensity range."""
    array, geometry = read_image(file, "image", allow_channels=True, check_finite=False)
    finite = np.isfinite(array)
    values = array[finite] if not finite.all() else array
    stored_dtype = str(geometry.nifti_header.get_data_dtype()) if geometry.nifti_header is not None else str(array.dtype)
    facts = {
        "file": str(file),
        **geometry.to_dict(),
        "channels": int(array.shape[3]) if array.ndim == 4 else 1,
        "dtype": stored_dtype,
        "min": float(np.min(values)) if values.size else float("nan"),
        "max": float(np.max(values)) if values.size else float("nan"),
        "mean": float(np.mean(values)) if values.size else float("nan"),
        "non_finite_voxels": int(array.size - np.count_nonzero(finite)),
    }
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    typer.echo(f"file:        {file}")
    typer.echo(f"shape:       {tuple(facts['shape'])}" + (f" x {facts['channels']} channels" if facts["channels"] > 1 else ""))
    typer.echo(f"spacing:     {' x '.join(f'{s:.4g}' for s in facts['spacing_mm'])} mm")
    typer.echo(f"orientation: {facts['orientation']}")
    typer.echo(f"dtype:       {facts['dtype']}")
    typer.echo(f"range:       [{facts['min']:.6g}, {facts['max']:.6g}] (mean {facts['mean']:.6g})")
    if facts["non_finite_voxels"]:
        typer.echo(f"non-finite:  {facts['non_finite_voxels']} NaN/inf voxels (range over the finite ones)")
    typer.echo(f"qform/sform: {facts['qform_code']}/{facts['sform_code']}")
    typer.echo("affine:")
    for row in geometry.affine:
        typer.echo("  " + "  ".join(f"{v:10.4f}" for v in row))
