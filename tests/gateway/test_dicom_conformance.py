"""The gateway's own DICOM files checked by dciodvfy (dicom3tools): the instances ``medseg predict --dicomweb``
pulls by WADO-RS and re-encodes (:func:`medseg.gateway.dicomweb.fetch_series`) stay as conformant as the
series sent, and read back as the same voxels on the same grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from medseg.gateway.dicomweb import fetch_series
from medseg.io.dicom import read_dicom_series
from tests.external_tools import dciodvfy, needs_dciodvfy
from tests.gateway.orthanc import Orthanc
from tests.gateway.test_dicomweb import needs_dicomweb


@needs_dciodvfy
@needs_dicomweb
def test_series_pulled_by_wado_rs_pass_dciodvfy(orthanc: Orthanc, make_series, tmp_path: Path) -> None:
    orthanc.start()
    files = make_series("conformance")
    orthanc.upload(files)
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    pulled = fetch_series(orthanc.dicomweb, str(first.StudyInstanceUID), None, tmp_path / "pulled")
    assert len(pulled) == len(files)
    for path in pulled:
        verdict = dciodvfy(path)
        assert (verdict.iod, verdict.errors, verdict.warnings) == ("CTImage", [], []), (path.name, verdict)
    sent, sent_geometry, _ = read_dicom_series(files[0].parent)
    got, got_geometry, _ = read_dicom_series(tmp_path / "pulled")
    assert sent_geometry.mismatch(got_geometry) is None
    np.testing.assert_array_equal(got, sent)
