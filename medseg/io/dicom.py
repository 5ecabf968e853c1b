"""DICOM series in: one CT/MR series of a folder -> ``(array (I, J, K), Geometry)`` through SimpleITK (GDCM).

The folder is scanned file by file first (:mod:`medseg.io.dicom_scan`): a file that looks like DICOM but
cannot be read, or a file of the chosen series with truncated pixel data, is an error naming that file (a
series is used whole or not at all); files that are no image of any series (README.TXT, DICOMDIR) are
ignored and listed in :attr:`DicomSeries.ignored_files`. SimpleITK reads a file list in whatever order it
is given and only warns about gaps, so this module then checks every slice's header and refuses what
would give a wrong geometry: slices with different orientations or sizes, missing or duplicate slices,
uneven slice spacing and gantry tilt (slices shifted within their plane, i.e. a sheared volume). The
geometry is built from the tags themselves (orientation, first slice position, pixel spacing, mean slice
distance) in nibabel's RAS+ convention; voxel axes are ``i`` = column, ``j`` = row, ``k`` = slice in
order along the slice normal (what SimpleITK reads for the same files, in the same order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseg.errors import MedsegInputError
from medseg.io.dicom_scan import FolderScan, check_complete, check_supported, scan_folder
from medseg.io.geometry import LPS_TO_RAS, Geometry

#: Largest in-plane shift between neighbouring slices, as an angle, still read as untilted (degrees).
MAX_TILT_DEG = 0.01
#: Largest distance of a slice from the uniform grid fitted through all slices, as a fraction of the spacing.
MAX_SPACING_DEVIATION = 0.05

#: name -> (tag as GDCM writes it, for messages; pydicom keyword)
_TAGS = {
    "orientation": ("0020|0037", "ImageOrientationPatient"),
    "position": ("0020|0032", "ImagePositionPatient"),
    "rows": ("0028|0010", "Rows"),
    "columns": ("0028|0011", "Columns"),
    "pixel_spacing": ("0028|0030", "PixelSpacing"),
    "sop_uid": ("0008|0018", "SOPInstanceUID"),
    "modality": ("0008|0060", "Modality"),
    "description": ("0008|103e", "SeriesDescription"),
    "study_uid": ("0020|000d", "StudyInstanceUID"),
    "frame_of_reference": ("0020|0052", "FrameOfReferenceUID"),
}


@dataclass(frozen=True)
class DicomSeries:
    """One series of a folder, its slices in array order (``files[k]`` is slice ``k`` of the volume).

    Attributes:
        note: which series was chosen among several, and why (for logs and reports).
        warnings: what is odd but usable (e.g. a single-frame series with inconsistent optional tags).
        ignored: one line per other series of the folder (UID, description, file count), not used.
        ignored_files: one line per file of the folder that is no image of any series (name and why).
    """

    folder: Path
    uid: str
    files: tuple[Path, ...]
    modality: str = ""
    description: str = ""
    study_uid: str = ""
    frame_of_reference_uid: str = ""
    sop_instance_uids: tuple[str, ...] = ()
    note: str = ""
    warnings: tuple[str, ...] = field(default_factory=tuple)
    ignored: tuple[str, ...] = ()
    ignored_files: tuple[str, ...] = ()

    @property
    def n_slices(self) -> int:
        return len(self.files)

    def describe(self) -> str:
        """One line: ``series 1.2.3 'Thorax 1mm' (CT, 120 slices)``."""
        return _series_line(self.uid, self.description, self.n_slices, self.modality, "slices")

    def console_lines(self) -> list[str]:
        """What ``medseg predict`` prints about the input: the series used, the series and files ignored."""
        lines = [f"used {self.describe()}"]
        lines += [f"ignored {line}" for line in self.ignored]
        if self.ignored_files:
            lines.append(f"ignored {len(self.ignored_files)} file(s) that are no image of a series: {', '.join(self.ignored_files)}")
        return lines

    def summary(self) -> dict[str, object]:
        """JSON-friendly description (reports)."""
        return {
            "folder": str(self.folder),
            "series_instance_uid": self.uid,
            "modality": self.modality,
            "description": self.description,
            "slices": self.n_slices,
            "frame_of_reference_uid": self.frame_of_reference_uid,
            "note": self.note,
            "ignored_series": list(self.ignored),
            "ignored_files": list(self.ignored_files),
        }


def _series_line(uid: str, description: str, count: int, modality: str = "", unit: str = "files") -> str:
    what = ", ".join(v for v in (modality, f"{count} {unit}") if v)
    return f"series {uid}" + (f" '{description}'" if description else "") + f" ({what})"


def is_dicom_file(path: str | Path) -> bool:
    """True for a file with the DICOM preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def is_dicom_folder(folder: str | Path) -> bool:
    """True when ``folder`` directly holds at least one DICOM file."""
    folder = Path(folder)
    return folder.is_dir() and any(p.is_file() and is_dicom_file(p) for p in sorted(folder.iterdir()))


def list_series(folder: str | Path) -> dict[str, list[Path]]:
    """``{series instance UID: files}`` of a folder (not recursive), files sorted by name."""
    return scan_folder(folder).series


def _header(scan: FolderScan, path: Path) -> dict[str, str]:
    values = {name: scan.text(path, keyword) for name, (_, keyword) in _TAGS.items()}
    return {name: value for name, value in values.items() if value}


def _floats(path: Path, header: dict[str, str], name: str, count: int) -> np.ndarray:
    text = header.get(name, "")
    try:
        values = np.array([float(v) for v in text.split("\\")], dtype=np.float64)
    except ValueError:
        values = np.array([])
    if values.size != count:
        raise MedsegInputError(path, f"DICOM tag {name.replace('_', ' ')} ({_TAGS[name][0]}) is missing or malformed: '{text}'")
    return values


def _choose(scan: FolderScan, series_uid: str | None) -> tuple[str, str]:
    """Pick a series of a scanned folder: ``series_uid`` when given, else the one with most files.

    Returns ``(uid, note)``.
    """
    series, folder = scan.series, scan.folder
    if not series:
        if scan.unreadable:
            raise MedsegInputError(*scan.unreadable[0])
        raise MedsegInputError(folder, "holds no DICOM series")
    listing = ", ".join(f"{uid} ({len(files)} files)" for uid, files in sorted(series.items(), key=lambda kv: -len(kv[1])))
    if series_uid is not None:
        if series_uid not in series:
            raise MedsegInputError(folder, f"has no series {series_uid}; it holds {listing}")
        return series_uid, f"series {series_uid} (--series-uid)"
    uid = max(series, key=lambda u: (len(series[u]), u))
    if len(series) == 1:
        return uid, f"series {uid}, the only one in the folder"
    return uid, f"series {uid} with the most slices ({len(series[uid])}) of {len(series)}: {listing}"


def select_series(folder: str | Path, series_uid: str | None = None) -> tuple[str, list[Path], str]:
    """Pick a series: ``series_uid`` when given, else the one with most slices. Returns ``(uid, files, note)``."""
    scan = scan_folder(folder)
    uid, note = _choose(scan, series_uid)
    return uid, scan.series[uid], note


def _check_consistent(files: list[Path], headers: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Every slice shares orientation, size and pixel spacing; returns ``(orientation (6,), pixel spacing (2,))``."""
    first = files[0]
    orientation = _floats(first, headers[0], "orientation", 6)
    spacing = _floats(first, headers[0], "pixel_spacing", 2)
    size = (headers[0].get("rows"), headers[0].get("columns"))
    for path, header in zip(files, headers):
        other = _floats(path, header, "orientation", 6)
        if not np.allclose(other, orientation, atol=1e-4):
            raise MedsegInputError(
                path.parent, f"mixed orientations in one series: {first.name} has {_fmt(orientation)}, {path.name} has {_fmt(other)}"
            )
        if (header.get("rows"), header.get("columns")) != size:
            raise MedsegInputError(path.parent, f"slices of different sizes: {first.name} is {size[0]}x{size[1]}, {path.name} is {header.get('rows')}x{header.get('columns')}")
        if not np.allclose(_floats(path, header, "pixel_spacing", 2), spacing, atol=1e-4):
            raise MedsegInputError(path.parent, f"slices with different pixel spacing: {first.name} and {path.name}")
    return orientation, spacing


def _slice_order(files: list[Path], headers: list[dict[str, str]], orientation: np.ndarray) -> tuple[list[int], float]:
    """Order of the slices along the normal and the slice spacing, after the gap/duplicate/tilt checks."""
    folder = files[0].parent
    if len(files) < 2:
        raise MedsegInputError(folder, "the series has a single slice; expected a 3D volume")
    row, col = orientation[:3], orientation[3:]
    normal = np.cross(row, col)
    positions = np.stack([_floats(p, h, "position", 3) for p, h in zip(files, headers)])
    distance = positions @ normal
    order = [int(i) for i in np.argsort(distance, kind="stable")]
    d = distance[order]
    steps = np.diff(d)
    if steps.min() < 1e-3:
        k = int(np.argmin(steps))
        raise MedsegInputError(
            folder, f"{files[order[k]].name} and {files[order[k + 1]].name} lie at the same position: duplicate slices, "
            "or several phases/echoes in one series (split them, or choose one with --series-uid)"
        )
    spacing = float(np.median(steps))
    big = np.nonzero(steps > 1.5 * spacing)[0]
    if big.size:
        k = int(big[0])
        missing = int(round(steps[k] / spacing)) - 1
        raise MedsegInputError(
            folder, f"missing slices: a gap of {steps[k]:.3g} mm between {files[order[k]].name} and {files[order[k + 1]].name} "
            f"where the slice spacing is {spacing:.3g} mm (about {max(missing, 1)} slice(s) missing)"
        )
    mean = (d[-1] - d[0]) / (len(d) - 1)
    deviation = np.abs(d - (d[0] + mean * np.arange(len(d))))
    if deviation.max() > max(MAX_SPACING_DEVIATION * mean, 1e-3):
        raise MedsegInputError(folder, f"uneven slice spacing ({steps.min():.4g} to {steps.max():.4g} mm); resample the series to even spacing first")
    sorted_positions = positions[order]
    in_plane = sorted_positions[-1] - sorted_positions[0] - (d[-1] - d[0]) * normal
    tilt = float(np.degrees(np.arctan2(np.linalg.norm(in_plane), d[-1] - d[0])))
    if tilt > MAX_TILT_DEG:
        raise MedsegInputError(
            folder, f"gantry tilt: slices are shifted within their plane by {tilt:.2f} degrees (a sheared volume); "
            "resample it to an orthogonal grid first (e.g. the scanner's or PACS's reformat without tilt)"
        )
    return order, float(mean)


def read_dicom_series(folder: str | Path, series_uid: str | None = None) -> tuple[np.ndarray, Geometry, DicomSeries]:
    """Read one DICOM series of ``folder`` as a float32 ``(I, J, K)`` volume (rescale slope/intercept applied).

    Args:
        folder: a folder holding the series' files (other series may be there too).
        series_uid: which series; default the one with the most slices (``DicomSeries.note`` says which).

    Raises:
        MedsegInputError: no series, unknown UID, mixed orientations or sizes, missing, duplicate or unevenly
            spaced slices, gantry tilt, multi-frame (enhanced) or Siemens MOSAIC files, unreadable or
            truncated files (any file that looks like DICOM but cannot be read, named in the message).
    """
    import SimpleITK as sitk

    folder = Path(folder)
    scan = scan_folder(folder)
    uid, note = _choose(scan, series_uid)
    if scan.unreadable:  # it may belong to the series: refuse rather than read the series without it
        raise MedsegInputError(*scan.unreadable[0])
    files = scan.series[uid]
    for path in files:  # one slice per file, each complete, before any geometry is trusted
        check_supported(path, scan.headers[path])
        check_complete(path, scan.headers[path])
    headers = [_header(scan, path) for path in files]
    orientation, pixel_spacing = _check_consistent(files, headers)
    order, slice_spacing = _slice_order(files, headers, orientation)
    files = [files[i] for i in order]
    headers = [headers[i] for i in order]
    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    # float32, not the first file's pixel type: each slice may carry its own Rescale Slope/Intercept (Philips MR, PET),
    # and a first slice with identity rescale made the volume int16, truncating or wrapping the others' values
    reader.SetOutputPixelType(sitk.sitkFloat32)
    reader.SetFileNames([str(f) for f in files])
    # ITK warns on stderr ("Non uniform sampling") about slice jitter that _slice_order has already checked and
    # accepted; the geometry below is medseg's own, so the warning would only alarm the user
    warnings_shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise MedsegInputError(folder, f"cannot read series {uid} ({str(exc).strip().splitlines()[0][:160]})") from exc
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings_shown)
    array = np.moveaxis(sitk.GetArrayFromImage(image), (0, 1, 2), (2, 1, 0)).astype(np.float32)  # (K, J, I) -> (I, J, K)
    row, col = orientation[:3], orientation[3:]
    lps = np.eye(4)
    # i runs along a row (row cosine, column spacing PixelSpacing[1]); j down a column (PixelSpacing[0])
    lps[:3, 0] = row * pixel_spacing[1]
    lps[:3, 1] = col * pixel_spacing[0]
    lps[:3, 2] = np.cross(row, col) * slice_spacing
    lps[:3, 3] = _floats(files[0], headers[0], "position", 3)
    geometry = Geometry(tuple(array.shape), LPS_TO_RAS @ lps, 1, 1, None, f"{folder} (series {uid})")
    if not np.isfinite(array).all():
        raise MedsegInputError(folder, f"series {uid} holds NaN or infinite voxels")
    first = headers[0]
    series = DicomSeries(
        folder=folder,
        uid=uid,
        files=tuple(files),
        modality=first.get("modality", ""),
        description=first.get("description", ""),
        study_uid=first.get("study_uid", ""),
        frame_of_reference_uid=first.get("frame_of_reference", ""),
        sop_instance_uids=tuple(h.get("sop_uid", "") for h in headers),
        note=note,
        ignored=tuple(
            _series_line(other, scan.text(paths[0], "SeriesDescription"), len(paths), scan.text(paths[0], "Modality"))
            for other, paths in sorted(scan.series.items()) if other != uid
        ),
        ignored_files=tuple(f"{path.name} ({why})" for path, why in scan.ignored),
    )
    return array, geometry, series


def _fmt(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in values) + "]"


__all__ = ["DicomSeries", "is_dicom_file", "is_dicom_folder", "list_series", "read_dicom_series", "select_series"]
