"""Preflight checks of images and label maps (``medseg check``): one problem per line, with its fix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.errors import MedsegInputError
from medseg.io.geometry import Geometry
from medseg.io.image_io import read_image

MIN_SPACING_MM, MAX_SPACING_MM, MAX_ANISOTROPY = 0.05, 20.0, 10.0


@dataclass(frozen=True)
class Problem:
    path: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem} -> fix: {self.fix}"


def _geometry_problems(path: str, geometry: Geometry) -> list[Problem]:
    out = []
    if not geometry.is_orthonormal():
        out.append(Problem(path, "direction cosines are not orthonormal (sheared affine)", "resample onto an orthonormal grid (e.g. SimpleITK ResampleImageFilter)"))
    spacing = np.asarray(geometry.spacing)
    if spacing.min() < MIN_SPACING_MM or spacing.max() > MAX_SPACING_MM:
        out.append(Problem(path, f"extreme voxel size {' x '.join(f'{s:.4g}' for s in spacing)} mm", "check pixdim and the spatial units in the header (mm expected)"))
    elif spacing.max() / spacing.min() > MAX_ANISOTROPY:
        out.append(Problem(path, f"voxel size is {spacing.max() / spacing.min():.0f}x anisotropic ({' x '.join(f'{s:.4g}' for s in spacing)} mm)", "confirm the slice thickness; a 2D model along the thick axis may suit better"))
    return out


def _fix(path: str | Path, exc: MedsegInputError, default: str) -> str:
    if not Path(path).exists():
        return "check the path (no such file)"
    return "split the 4th axis into one file per channel" if "4D" in exc.problem else default


def check_series(folder: str | Path) -> tuple[list[Problem], int]:
    """Problems of a DICOM series folder, read as ``medseg predict`` reads it; ``(problems, files read)``."""
    from medseg.io.dicom import read_dicom_series  # pydicom/SimpleITK series scan only when a folder is checked

    try:
        _, geometry, series = read_dicom_series(folder)
    except MedsegInputError as exc:
        return [Problem(exc.path or str(folder), exc.problem, "re-export the series from its source (PACS, scanner), whole")], 1
    return _geometry_problems(str(folder), geometry), len(series.files)


def check_image(path: str | Path, allow_channels: bool = False) -> tuple[list[Problem], Geometry | None]:
    """Problems of one image file (unreadable, wrong dimensionality, geometry, empty/NaN/inf voxels)."""
    name = str(path)
    try:
        array, geometry = read_image(path, "image", allow_channels=allow_channels, check_finite=False)
    except MedsegInputError as exc:
        return [Problem(name, exc.problem, _fix(path, exc, "re-export the file from its source"))], None
    out = _geometry_problems(name, geometry)
    finite = np.isfinite(array)
    if not finite.all():
        bad = array.size - int(np.count_nonzero(finite))
        what = "every voxel is" if bad == array.size else f"{bad} voxels are"
        out.append(Problem(name, f"{what} NaN or infinite", "replace them (e.g. by the background value) before use"))
    elif not np.any(array):
        out.append(Problem(name, "every voxel is zero", "check that the right file was exported"))
    return out, geometry


def check_label(path: str | Path, allowed: Sequence[int] | None = None, image_geometry: Geometry | None = None) -> list[Problem]:
    """Problems of a label map: unreadable, values outside ``allowed``, geometry differing from its image."""
    name = str(path)
    try:
        labels, geometry = read_image(path, "label")
    except MedsegInputError as exc:
        return [Problem(name, exc.problem, _fix(path, exc, "re-export the label map as integers in the image's geometry"))]
    out = _geometry_problems(name, geometry)
    if allowed is not None:
        extra = sorted(set(np.unique(labels).tolist()) - set(allowed))
        if extra:
            out.append(Problem(name, f"label values {extra} are not in the label map {sorted(allowed)}", "map them to known labels or add them to data.labels"))
    if image_geometry is not None:
        problem = image_geometry.mismatch(geometry, atol=1e-4)
        if problem is not None:
            out.append(Problem(name, f"geometry differs from its image {Path(image_geometry.source).name}: {problem}", "resample the label map onto the image grid (nearest neighbour)"))
    return out
