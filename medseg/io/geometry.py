"""The geometry contract: what an output image must share with its input.

A :class:`Geometry` is the spatial shape plus the voxel-to-world affine in nibabel's RAS+ convention
(millimetres), with the NIfTI header codes where the image came from a NIfTI file. Every path that writes
an image compares the array it writes against the geometry of the image it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np

AFFINE_ATOL = 1e-5
#: Diagonal flip between ITK's LPS+ world and nibabel's RAS+ world.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True, eq=False)
class Geometry:
    """Spatial shape and affine of an image (array axes are the file's voxel axes i, j, k).

    Attributes:
        shape: spatial shape ``(I, J, K)`` in the file's voxel order.
        affine: 4x4 voxel-to-RAS+ (mm) affine.
        qform_code / sform_code: NIfTI header codes (``1``/``1`` for images read through SimpleITK).
        nifti_header: the NIfTI header the image was read with (kept to write outputs that match it).
        source: where it was read from (for messages).
    """

    shape: tuple[int, ...]
    affine: np.ndarray
    qform_code: int = 1
    sform_code: int = 1
    nifti_header: Any = field(default=None, repr=False)
    source: str = ""

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm along each array axis (column norms of the affine)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def orientation(self) -> str:
        """Closest axis codes, e.g. ``"RAS"`` or ``"LPS"`` (nibabel ``aff2axcodes``)."""
        return "".join(nib.aff2axcodes(self.affine))

    @property
    def direction_cosines(self) -> np.ndarray:
        """3x3 matrix of unit column vectors (RAS+)."""
        return self.affine[:3, :3] / np.asarray(self.spacing)

    def is_orthonormal(self, atol: float = 1e-4) -> bool:
        """True when the voxel axes are perpendicular (no shear)."""
        d = self.direction_cosines
        return bool(np.allclose(d.T @ d, np.eye(3), atol=atol))

    def physical_size_mm(self) -> np.ndarray:
        """Extent of the image along each voxel axis in mm."""
        return np.asarray(self.shape[:3]) * np.asarray(self.spacing)

    def diagonal_mm(self) -> float:
        """Length of the image diagonal in mm (worst-case surface distance)."""
        return float(np.linalg.norm(self.physical_size_mm()))

    def mismatch(self, other: Geometry, atol: float = AFFINE_ATOL) -> str | None:
        """Describe how ``other`` differs from this geometry, or ``None`` when they agree within ``atol``."""
        if tuple(self.shape[:3]) != tuple(other.shape[:3]):
            return f"shape {tuple(other.shape[:3])} != {tuple(self.shape[:3])}"
        if not np.allclose(self.spacing, other.spacing, atol=atol, rtol=0):
            return f"voxel size {_fmt(other.spacing)} != {_fmt(self.spacing)} mm"
        if not np.allclose(self.affine, other.affine, atol=atol, rtol=0):
            diff = float(np.abs(self.affine - other.affine).max())
            return f"affine differs by up to {diff:.3g} (orientation {other.orientation} vs {self.orientation})"
        return None

    def with_source(self, source: str) -> Geometry:
        return Geometry(self.shape, self.affine, self.qform_code, self.sform_code, self.nifti_header, source)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (reports, ``medseg info``)."""
        return {
            "shape": list(self.shape),
            "spacing_mm": [round(s, 6) for s in self.spacing],
            "orientation": self.orientation,
            "affine": np.round(self.affine, 6).tolist(),
            "qform_code": int(self.qform_code),
            "sform_code": int(self.sform_code),
        }


def _fmt(values: tuple[float, ...] | np.ndarray) -> str:
    return "x".join(f"{v:.4g}" for v in values)


def itk_to_ras_affine(spacing: tuple[float, ...], origin: tuple[float, ...], direction: tuple[float, ...]) -> np.ndarray:
    """Affine (RAS+) from SimpleITK's LPS+ spacing/origin/direction of a 3D image."""
    direction_m = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction_m @ np.diag(spacing)
    affine[:3, 3] = origin
    return LPS_TO_RAS @ affine


def ras_affine_to_itk(affine: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Inverse of :func:`itk_to_ras_affine`: ``(spacing, origin, direction)`` in LPS+."""
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    return tuple(spacing.tolist()), tuple(lps[:3, 3].tolist()), tuple(direction.ravel().tolist())


def reorient(array: np.ndarray, affine: np.ndarray, code: str) -> tuple[np.ndarray, np.ndarray]:
    """Store the same anatomy with voxel axes in orientation ``code`` (e.g. ``"LPS"``, ``"PSR"``).

    The world position of every voxel value is unchanged: only the array layout and affine change.
    """
    current = nib.orientations.io_orientation(affine)
    target = nib.orientations.axcodes2ornt(tuple(code))
    transform = nib.orientations.ornt_transform(current, target)
    new_array = nib.orientations.apply_orientation(array, transform)
    new_affine = affine @ nib.orientations.inv_ornt_aff(transform, array.shape)
    return np.ascontiguousarray(new_array), new_affine
