"""Write a volume as a classic single-frame DICOM series (pydicom): test series from phantoms.

Used to make DICOM inputs for tests, the demo and the Docker check from the NIfTI phantoms (nothing is
downloaded). The series is CT or MR Image Storage, int16 with RescaleSlope/Intercept, explicit VR little
endian, with every attribute that readers (SimpleITK/GDCM) and DICOM SEG writers (highdicom) rely on and
that the CT/MR Image IODs require: dicom3tools' ``dciodvfy`` finds no error in them (tests/io/test_external_tools.py).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from medseg.errors import MedsegError
from medseg.io.atomic import atomic_path
from medseg.io.geometry import LPS_TO_RAS, Geometry

SOP_CLASSES = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}


def require_pydicom() -> None:
    """Raise a one-line error when highdicom or pydicom (core dependencies) cannot be imported."""
    try:
        import highdicom  # noqa: F401
        import pydicom  # noqa: F401
    except ImportError as exc:
        raise MedsegError(f"DICOM output needs highdicom and pydicom, dependencies of medseg (reinstall medseg): {exc}") from exc


def _rescale(array: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Integer pixels + (slope, intercept) such that ``pixels * slope + intercept`` ~ ``array``."""
    lo, hi = float(array.min()), float(array.max())
    if np.allclose(array, np.rint(array)) and lo >= -32768 and hi <= 32767:
        return np.rint(array).astype(np.int16), 1.0, 0.0
    slope = max((hi - lo) / 65000.0, 1e-6)
    intercept = lo + 32500.0 * slope
    return np.clip(np.rint((array - intercept) / slope), -32768, 32767).astype(np.int16), slope, intercept


def write_dicom_series(
    folder: str | Path,
    array: np.ndarray,
    geometry: Geometry,
    modality: str = "CT",
    series_description: str = "medseg phantom",
    patient_id: str = "PHANTOM",
    seed: int | str = 0,
    series_number: int = 1,
    study_uid: str | None = None,
    body_part: str = "ABDOMEN",
) -> list[Path]:
    """Write ``array`` ``(I, J, K)`` in ``geometry`` as one file per slice ``k`` (``slice_0000.dcm`` ...).

    The voxel axes become columns (``i``), rows (``j``) and slices (``k``); ``geometry`` must be right-handed
    (slice ``k`` advancing along the normal of the image plane), so reading the series back gives the
    same geometry. UIDs derive from ``seed`` (the same seed gives the same series). ``body_part`` is the
    Body Part Examined (the phantoms are abdominal CT-like cases); an unpaired part, so no Laterality is due.

    Raises:
        ValueError: a left-handed grid, or a modality other than CT/MR.
    """
    require_pydicom()
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    if modality not in SOP_CLASSES:
        raise ValueError(f"modality must be one of {', '.join(SOP_CLASSES)}")
    lps = LPS_TO_RAS @ np.asarray(geometry.affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    row, col, slice_dir = (lps[:3, i] / spacing[i] for i in range(3))
    if np.dot(np.cross(row, col), slice_dir) <= 0:
        raise ValueError("geometry is left-handed: reorder the k axis (e.g. medseg.io.reorient) before writing DICOM")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pixels, slope, intercept = _rescale(np.asarray(array, dtype=np.float64))
    uid = lambda *parts: generate_uid(entropy_srcs=[str(seed), *map(str, parts)])  # noqa: E731
    study_uid = study_uid or uid("study")
    series_uid, frame_uid = uid("series", series_number), uid("frame", series_number)
    now = datetime(2024, 1, 1, 12, 0, 0)
    written = []
    for k in range(pixels.shape[2]):
        sop_uid = UID(uid("sop", series_number, k))
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(SOP_CLASSES[modality])
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = SOP_CLASSES[modality], sop_uid
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Medseg", patient_id, "", "O"
        ds.StudyInstanceUID, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = study_uid, "1", "", ""
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, series_number, series_description
        ds.Modality, ds.Manufacturer, ds.InstanceNumber = modality, "medseg phantom", k + 1
        ds.BodyPartExamined, ds.PatientPosition, ds.AcquisitionNumber = body_part, "HFS", 1  # Type 2C/2 for CT and MR
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_uid, ""
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL" if modality == "CT" else "OTHER"]  # AXIAL is a CT term
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row, *col)]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in lps[:3, 3] + k * lps[:3, 2]]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]  # row spacing (along j), column spacing (along i)
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.SpacingBetweenSlices = f"{spacing[2]:.6f}"
        ds.SliceLocation = f"{float(np.dot(lps[:3, 3] + k * lps[:3, 2], np.cross(row, col))):.6f}"
        ds.Rows, ds.Columns = pixels.shape[1], pixels.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        if modality == "CT" or (slope, intercept) != (1.0, 0.0):  # the MR Image IOD has no rescale: only when needed
            ds.RescaleIntercept, ds.RescaleSlope = f"{intercept:.10g}", f"{slope:.10g}"
        if modality == "CT":
            ds.RescaleType, ds.KVP = "HU", "120"
        else:  # MR Image module, Type 1 and 2: a phantom has no pulse sequence ("RM": research mode)
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "RM", "NONE", "", "3D"
            ds.RepetitionTime = ds.EchoTime = ds.EchoTrainLength = ""
        ds.PixelData = np.ascontiguousarray(pixels[:, :, k].T).tobytes()  # (rows=j, columns=i)
        path = folder / f"slice_{k:04d}.dcm"
        with atomic_path(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        written.append(path)
    return written


__all__ = ["SOP_CLASSES", "require_pydicom", "write_dicom_series"]
