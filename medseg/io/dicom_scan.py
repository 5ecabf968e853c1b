"""What a DICOM folder holds, file by file: series, files that are not images, and broken files.

GDCM's series scan (``ImageSeriesReader.GetGDCMSeriesFileNames``) skips files it cannot read without a
word, so a truncated slice silently shortens the volume or shows up as a "gap". medseg therefore scans
the folder itself with pydicom: every file is either part of a series, ignored with a reason (not DICOM,
a DICOMDIR, a DICOM object that belongs to no series), or unreadable (named in the error). The files of
the series that is used are then checked one by one for complete pixel data and for image types medseg
does not read (enhanced multi-frame, Siemens MOSAIC).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.errors import MedsegInputError

#: Media Storage Directory (a DICOMDIR: an index of a DICOM medium, no image).
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
#: Siemens private tag "NumberOfImagesInMosaic" (CSA, group 0019).
MOSAIC_TAG = (0x0019, 0x100A)
_UNDEFINED = 0xFFFFFFFF


@dataclass
class FolderScan:
    """A folder's files (not recursive), sorted by name.

    Attributes:
        series: ``{SeriesInstanceUID: files}``.
        headers: pydicom header (pixel data deferred) of every file of ``series``.
        ignored: ``(file, why)`` for files that are not part of any series (README.TXT, DICOMDIR, ...).
        unreadable: ``(file, problem)`` for DICOM files whose header cannot be read.
    """

    folder: Path
    series: dict[str, list[Path]] = field(default_factory=dict)
    headers: dict[Path, object] = field(default_factory=dict)
    ignored: list[tuple[Path, str]] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    def text(self, path: Path, keyword: str) -> str:
        """A header value as text (multi-values joined with ``\\``, as in GDCM); ``""`` when absent."""
        value = getattr(self.headers[path], keyword, None)
        if value is None:
            return ""
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            return "\\".join(str(v) for v in value)
        return str(value).strip()


def _has_preamble(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def scan_folder(folder: str | Path) -> FolderScan:
    """Sort every regular, non-hidden file of ``folder`` into series, ignored and unreadable files."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    scan = FolderScan(folder)
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            preamble = _has_preamble(path)
        except OSError as exc:
            scan.unreadable.append((path, f"cannot be opened ({exc.strerror})"))
            continue
        try:
            # pixel data is deferred (not read), but its offset and length are kept for check_complete
            ds = pydicom.dcmread(path, defer_size=1024, force=not preamble)
        except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
            if preamble:
                scan.unreadable.append((path, f"truncated or corrupt DICOM file ({' '.join(str(exc).split())[:120]})"))
            else:
                scan.ignored.append((path, "not a DICOM file"))
            continue
        meta = getattr(ds, "file_meta", None)
        sop_class = str(getattr(ds, "SOPClassUID", "") or (meta.get("MediaStorageSOPClassUID", "") if meta is not None else ""))
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "").strip()
        if sop_class == DICOMDIR_SOP_CLASS or path.name.upper() == "DICOMDIR":
            scan.ignored.append((path, "a DICOMDIR (index of a DICOM medium)"))
        elif not uid and preamble:  # every image has one: a header cut short (pydicom reads what is there)
            scan.unreadable.append((path, "truncated or corrupt DICOM file (no SeriesInstanceUID in its header)"))
        elif not uid:
            scan.ignored.append((path, "not a DICOM file"))
        else:
            scan.series.setdefault(uid, []).append(path)
            scan.headers[path] = ds
    return scan


def check_complete(path: Path, ds: Any) -> None:
    """Refuse a file whose pixel data is missing or shorter than its header says (a truncated file).

    Native pixel data must hold Rows x Columns x SamplesPerPixel x BitsAllocated/8 x frames bytes and end
    inside the file; compressed (encapsulated) pixel data is decoded once by GDCM, the only reliable test.
    """
    size = path.stat().st_size
    element = ds.get_item("PixelData") if "PixelData" in ds else None
    if element is None:
        raise MedsegInputError(path, f"truncated DICOM file: it ends ({size} bytes) before its pixel data")
    length = getattr(element, "length", None)
    tell = getattr(element, "value_tell", None)
    if length is not None and length != _UNDEFINED and tell is not None:
        try:
            expected = int(ds.Rows) * int(ds.Columns) * int(getattr(ds, "SamplesPerPixel", 1) or 1)
            expected = expected * int(ds.BitsAllocated) // 8 * int(float(getattr(ds, "NumberOfFrames", 1) or 1))
        except (AttributeError, TypeError, ValueError):
            raise MedsegInputError(path, "DICOM image without Rows, Columns or BitsAllocated (truncated or corrupt header)") from None
        present = max(0, min(length, size - tell))
        if present < expected:
            raise MedsegInputError(path, f"truncated DICOM file: pixel data has {present} of {expected} bytes")
        return
    import SimpleITK as sitk

    try:
        sitk.ReadImage(str(path), imageIO="GDCMImageIO")
    except RuntimeError as exc:  # GDCM's message is a stack of source paths: not for users
        raise MedsegInputError(path, "truncated or corrupt DICOM file: GDCM cannot decode its compressed pixel data") from exc


def check_supported(path: Path, ds: Any) -> None:
    """Refuse, by name, image types that are not one slice per file: multi-frame (enhanced) and MOSAIC."""
    image_type = [str(v).strip().upper() for v in (getattr(ds, "ImageType", None) or [])]
    if "MOSAIC" in image_type or MOSAIC_TAG in ds:
        raise MedsegInputError(
            path, "Siemens MOSAIC image (several slices tiled in one image) is not supported; "
            "convert it to single slices or NIfTI first (e.g. with dcm2niix)"
        )
    frames = getattr(ds, "NumberOfFrames", None)
    if frames is not None and int(float(frames)) > 1:
        from pydicom.uid import UID

        sop = UID(str(getattr(ds, "SOPClassUID", "")))
        kind = sop.name if sop.is_valid and sop.name != str(sop) else "multi-frame"
        raise MedsegInputError(
            path, f"multi-frame DICOM ({kind}, {int(float(frames))} frames) is not supported; export the series as "
            "single-frame images (classic CT/MR Image Storage) or convert it to NIfTI first (e.g. with dcm2niix)"
        )


__all__ = ["DICOMDIR_SOP_CLASS", "FolderScan", "check_complete", "check_supported", "scan_folder"]
