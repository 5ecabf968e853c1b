"""DICOM SEG out (highdicom): a label map in the geometry of its source series, one segment per label.

The SEG references every source image (by SOP instance UID) and the series' frame of reference, so a
PACS viewer overlays it on the series it came from. Frame ``k`` of the label map is slice ``k`` of the
source series (:attr:`DicomSeries.files` order), transposed from ``(I, J)`` = (column, row) to the DICOM
frame layout ``(rows, columns)``. Segment labels come from the model package's label names; colours and
codes from its optional ``segments`` section (defaults: the preview palette and SCT "Tissue").

The SEG's UIDs (series, SOP instance, segment tracking) are derived from the source series UID and the
model's name and version (:func:`seg_uid`): segmenting the same series with the same model again gives the
same SEG identity, so a PACS that receives it twice (a resent gateway job, a repeated ``--send-to``) keeps
one copy instead of a duplicate.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from medseg.errors import MedsegOutputError
from medseg.io.atomic import atomic_path
from medseg.io.dicom import DicomSeries
from medseg.io.dicom_write import require_pydicom

#: SNOMED CT "Tissue": the default segmented property category and type.
TISSUE = ("85756007", "SCT", "Tissue")


def segment_numbers(label_names: Mapping[int, str]) -> dict[int, int]:
    """``{label value: segment number}``: foreground labels in ascending order numbered from 1."""
    return {value: number for number, value in enumerate(sorted(v for v in label_names if v != 0), start=1)}


def seg_uid(source_series_uid: str, model_name: str, model_version: str, *parts: str) -> str:
    """A UID determined by the source series, the model and ``parts`` (e.g. ``"series"``, ``"instance"``)."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["medseg DICOM SEG", source_series_uid, model_name, model_version, *parts]))


def write_dicom_seg(
    path: str | Path,
    labels: np.ndarray,
    series: DicomSeries,
    label_names: Mapping[int, str],
    model_name: str,
    model_version: str,
    segments: Mapping[int, object] | None = None,
    series_description: str | None = None,
) -> Path:
    """Write ``labels`` ``(I, J, K)`` (the source series' grid) as a binary DICOM SEG, atomically.

    Args:
        series: the source series (its files in slice order), as read by :func:`medseg.io.dicom.read_dicom_series`.
        label_names: ``{value: name}`` of the model package (background 0 is not a segment).
        segments: ``{value: SegmentStyle}`` of the package (colour and codes), optional per label.

    Returns:
        ``path``. Every foreground label of the package is a segment, also when it is empty.
    """
    require_pydicom()
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    from medseg._version import __version__

    if labels.shape[2] != series.n_slices:
        raise MedsegOutputError(f"{path}: label map has {labels.shape[2]} slices, the source series {series.n_slices}")
    numbers = segment_numbers(label_names)
    lut = np.zeros(max(max(label_names), int(labels.max(initial=0))) + 1, dtype=np.uint16)
    for value, number in numbers.items():
        lut[value] = number
    frames = np.ascontiguousarray(np.transpose(lut[labels], (2, 1, 0)))  # (K, rows=J, columns=I)
    frames = frames.astype(np.uint8 if len(numbers) < 256 else np.uint16)
    sources = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in series.files]
    uid = lambda *parts: seg_uid(str(sources[0].SeriesInstanceUID), model_name, model_version, *parts)  # noqa: E731
    algorithm = hd.AlgorithmIdentificationSequence(name=model_name, version=model_version, family=codes.cid7162.ArtificialIntelligence)
    descriptions = []
    for value, number in numbers.items():
        style = (segments or {}).get(value)
        colour = getattr(style, "color", None) or _default_colour(value)
        category = getattr(style, "category", None) or TISSUE
        kind = getattr(style, "type", None) or TISSUE
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=label_names[value][:64],
                segmented_property_category=hd.sr.CodedConcept(*category),
                segmented_property_type=hd.sr.CodedConcept(*kind),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                tracking_id=f"label {value}",
                tracking_uid=uid("segment", str(value)),
                display_color=hd.color.CIELabColor.from_rgb(*colour),
            )
        )
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=uid("series"),
        series_number=max(int(getattr(sources[0], "SeriesNumber", 0) or 0), 0) + 1000,
        sop_instance_uid=uid("instance"),
        instance_number=1,
        manufacturer="medseg",
        manufacturer_model_name=model_name[:64],
        software_versions=f"medseg {__version__}",
        device_serial_number="0",
        content_label="MEDSEG",
        content_description=f"{model_name} segmentation"[:64],
        series_description=(series_description or f"medseg {model_name}")[:64],
        omit_empty_frames=False,
    )
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return Path(path)


def _default_colour(value: int) -> tuple[int, int, int]:
    from medseg.palette import label_colour

    return label_colour(value)


__all__ = ["TISSUE", "seg_uid", "segment_numbers", "write_dicom_seg"]
