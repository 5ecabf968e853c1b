"""DICOM SEG out: written with highdicom, read back with highdicom/pydicom; every segment on its source slice."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom

from medseg.model.package import SegmentStyle
from medseg.io.dicom import read_dicom_series
from medseg.io.dicom_seg import write_dicom_seg
from medseg.io.dicom_write import write_dicom_series
from medseg.io.geometry import Geometry
from medseg.palette import label_colour

from tests.io.test_dicom import _oblique_affine, _volume

NAMES = {0: "background", 1: "liver", 2: "tumour", 4: "vessel"}  # non-contiguous values: segment numbers 1, 2, 3


def _labels(shape: tuple[int, int, int]) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    labels[2:8, 1:6, 1:4] = 1
    labels[9:12, 6:10, 5] = 2  # one slice only
    labels[0:2, 0:2, 7:9] = 4
    return labels


def test_dicom_seg_round_trip(tmp_path: Path) -> None:
    shape = (14, 11, 9)
    write_dicom_series(tmp_path / "series", _volume(shape), Geometry(shape, _oblique_affine(shape)), seed="seg")
    _, geometry, series = read_dicom_series(tmp_path / "series")
    labels = _labels(geometry.shape)
    styles = {2: SegmentStyle(color=(10, 200, 30), type=("52988006", "SCT", "Lesion"))}
    path = write_dicom_seg(tmp_path / "out.seg.dcm", labels, series, NAMES, "tiny-model", "1.0", styles)

    seg = hd.seg.segread(path)
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert seg.FrameOfReferenceUID == series.frame_of_reference_uid
    assert seg.StudyInstanceUID == series.study_uid
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series.uid
    referenced = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == set(series.sop_instance_uids)

    # segment labels, numbers, colours and codes come from the package
    by_label = {seg.get_segment_description(n).segment_label: seg.get_segment_description(n) for n in seg.get_segment_numbers()}
    assert sorted(by_label) == ["liver", "tumour", "vessel"]
    assert [by_label[name].segment_number for name in ("liver", "tumour", "vessel")] == [1, 2, 3]
    rgb = lambda d: hd.color.CIELabColor.from_dicom_value(d.RecommendedDisplayCIELabValue).to_rgb()  # noqa: E731
    assert np.allclose(rgb(by_label["tumour"]), (10, 200, 30), atol=2)
    assert np.allclose(rgb(by_label["liver"]), label_colour(1), atol=2)
    assert by_label["tumour"].segmented_property_type.value == "52988006"

    # every segment lands on its source slice: frames looked up by source SOP instance, in series order
    frames = seg.get_pixels_by_source_instance(list(series.sop_instance_uids), segment_numbers=[1, 2, 3])
    assert frames.shape == (9, 11, 14, 3)  # (slices, rows = j, columns = i, segments)
    for number, value in ((1, 1), (2, 2), (3, 4)):
        np.testing.assert_array_equal(np.transpose(frames[..., number - 1], (2, 1, 0)), labels == value)
    # and by geometry: each frame's plane position is the position of the slice it references
    for item in seg.PerFrameFunctionalGroupsSequence:
        source_uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = series.sop_instance_uids.index(source_uid)
        source = pydicom.dcmread(series.files[k], stop_before_pixels=True)
        np.testing.assert_allclose(
            [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient], [float(v) for v in source.ImagePositionPatient], atol=1e-3
        )


def test_dicom_seg_of_an_empty_prediction(tmp_path: Path) -> None:
    shape = (8, 6, 4)
    write_dicom_series(tmp_path / "series", _volume(shape), Geometry(shape, _oblique_affine(shape)), seed="empty")
    _, geometry, series = read_dicom_series(tmp_path / "series")
    path = write_dicom_seg(tmp_path / "empty.dcm", np.zeros(geometry.shape, np.uint8), series, {0: "bg", 1: "organ"}, "m", "1")
    seg = hd.seg.segread(path)
    assert seg.get_segment_numbers() == [1]
    assert not seg.get_pixels_by_source_instance(list(series.sop_instance_uids), segment_numbers=[1]).any()


def test_dicom_seg_identity_is_the_source_series_and_the_model(tmp_path: Path) -> None:
    """Written again for the same series and model: the same UIDs (a PACS keeps one copy); another model: new ones."""
    shape = (14, 11, 9)
    write_dicom_series(tmp_path / "series", _volume(shape), Geometry(shape, _oblique_affine(shape)), seed="identity")
    _, geometry, series = read_dicom_series(tmp_path / "series")
    labels = _labels(geometry.shape)
    uids = lambda ds: (ds.SeriesInstanceUID, ds.SOPInstanceUID, [s.TrackingUID for s in ds.SegmentSequence])  # noqa: E731
    first, again, other = (pydicom.dcmread(write_dicom_seg(tmp_path / name, labels, series, NAMES, "m", version))
                           for name, version in (("a.dcm", "1"), ("b.dcm", "1"), ("c.dcm", "2")))
    assert uids(first) == uids(again)
    assert not set(uids(first)[:2]) & set(uids(other)[:2])
    assert first.SeriesInstanceUID != series.uid and len(set(uids(first)[2])) == 3
