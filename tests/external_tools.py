"""Tools we did not write that check medseg's files from outside: dicom3tools' ``dciodvfy`` (is a DICOM
object what its IOD requires?) and Chris Rorden's ``dcm2niix`` (the reference DICOM -> NIfTI converter).

``dcm2niix`` comes from its PyPI wheel (the ``test`` extra); ``dciodvfy`` from the Debian package
``dicom3tools``, installed by ``.ci/run``. Tests that need a missing tool skip and say how to install it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.io.geometry import LPS_TO_RAS, Geometry

DCIODVFY_MISSING = "dciodvfy is not installed (apt-get install -y dicom3tools; .ci/run does it)"


def dciodvfy_path() -> str | None:
    return shutil.which("dciodvfy")


def dcm2niix_path() -> str | None:
    """The dcm2niix binary of the ``dcm2niix`` wheel, else one on PATH."""
    try:
        import dcm2niix
    except ImportError:
        return shutil.which("dcm2niix")
    return str(dcm2niix.bin) if Path(dcm2niix.bin).is_file() else shutil.which("dcm2niix")


needs_dciodvfy = pytest.mark.skipif(dciodvfy_path() is None, reason=DCIODVFY_MISSING)
needs_dcm2niix = pytest.mark.skipif(dcm2niix_path() is None, reason="dcm2niix is not installed (pip install dcm2niix: the test extra has it)")


@dataclass(frozen=True)
class Verdict:
    """What dciodvfy said about one file: the IOD it recognised, its ``Error - `` and ``Warning - `` lines."""

    iod: str
    errors: list[str]
    warnings: list[str]


def dciodvfy(path: Path) -> Verdict:
    """Run ``dciodvfy`` on one file (it reports on stderr; exit code 1 on errors)."""
    result = subprocess.run([str(dciodvfy_path()), str(path)], capture_output=True, text=True, timeout=60)
    lines = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("Error", "Abort"))]
    warnings = [line for line in lines if line.startswith("Warning")]
    iod = next((line for line in lines if not line.startswith(("Error", "Abort", "Warning"))), "")
    return Verdict(iod, errors, warnings)


def unexpected_warnings(verdict: Verdict, accepted: dict[str, str]) -> list[str]:
    """The warnings that match none of the ``accepted`` patterns (``{regex: why it is acceptable}``)."""
    return [w for w in verdict.warnings if not any(re.search(pattern, w) for pattern in accepted)]


def dcm2niix(folder: Path, out: Path) -> tuple[nib.Nifti1Image, list[str]]:
    """Convert the one series of ``folder`` with ``dcm2niix -z n -b n``: ``(the NIfTI image, its warning lines)``."""
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([str(dcm2niix_path()), "-z", "n", "-b", "n", "-f", "series", "-o", str(out), str(folder)],
                            capture_output=True, text=True, timeout=120)
    written = sorted(out.glob("*.nii"))
    assert result.returncode == 0 and len(written) == 1, f"dcm2niix wrote {written}:\n{result.stdout}\n{result.stderr}"
    warnings = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Warning")]
    return nib.load(written[0]), warnings


def canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(array, affine)`` flipped/permuted to the closest RAS+ voxel order (nibabel), as float64."""
    image = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(array, dtype=np.float64), affine))
    return np.asarray(image.dataobj, dtype=np.float64), image.affine


def check_itk_reads(path: Path, array: np.ndarray, geometry: Geometry) -> None:
    """ITK (SimpleITK) reads the NIfTI ``path`` as ``array`` ``(I, J, K)`` on ``geometry``: its origin, spacing and
    direction (LPS) are the affine with x and y negated."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    lps = LPS_TO_RAS @ geometry.affine
    np.testing.assert_allclose(image.GetSpacing(), geometry.spacing, atol=1e-5)
    np.testing.assert_allclose(image.GetOrigin(), lps[:3, 3], atol=1e-4)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), lps[:3, :3] / np.asarray(geometry.spacing), atol=1e-5)
    np.testing.assert_array_equal(np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0)), array)
