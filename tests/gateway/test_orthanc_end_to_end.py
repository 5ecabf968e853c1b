"""The gateway against a real Orthanc: C-STORE in, segmentation, SEG back by C-STORE and by STOW-RS."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from medseg.gateway.service import Gateway

from tests.gateway.conftest import gateway_config, http_json
from tests.gateway.orthanc import Orthanc, check_seg_of, dicomweb_plugin, wait_for


def start_gateway(tmp_path: Path, model: Path, running: list[Gateway], **overrides: object) -> Gateway:
    gateway = Gateway(gateway_config(tmp_path / "gateway", model, **overrides)).start()
    running.append(gateway)
    return gateway


def done_jobs(gateway: Gateway) -> list[dict]:
    jobs = http_json(f"http://127.0.0.1:{gateway.monitor.port}/jobs")["jobs"]
    return [j for j in jobs if j["state"] == "done"]


def test_orthanc_sends_a_series_and_gets_a_seg_back(orthanc: Orthanc, make_series, tiny_model: Path, tmp_path: Path, running_gateways) -> None:
    orthanc.start()
    destination = f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"
    gateway = start_gateway(tmp_path, tiny_model, running_gateways, destinations=[destination], archive_dir=str(tmp_path / "archive"))
    orthanc.add_modality("medseg", "MEDSEG", gateway.scp.port)
    files = make_series("e2e")
    orthanc.store_to("medseg", [orthanc.upload(files)])  # Orthanc C-STOREs the series to medseg

    (job,) = wait_for(lambda: done_jobs(gateway), 60, "the job to be done")
    assert job["sent"] == [destination] and job["attempts"] == 1 and job["last_error"] == ""
    (seg_id,) = orthanc.seg_instances()
    check_seg_of(orthanc.dataset(seg_id), files)
    # the archive keeps SEG, label map and report; the received files and the job's outputs are cleaned up
    archived = tmp_path / "archive" / job["study_uid"] / job["series_uid"] / "tiny-ct"
    assert {"series.seg.dcm", "series.nii.gz", "series.report.json"} <= {p.name for p in archived.iterdir()}
    wait_for(lambda: not any((tmp_path / "gateway" / "incoming").iterdir()), 10, "the received files to be removed")
    health = http_json(f"http://127.0.0.1:{gateway.monitor.port}/health")
    assert health["status"] == "ok" and health["jobs"]["done"] == 1 and health["dicom_port"] == gateway.scp.port


@pytest.mark.skipif(dicomweb_plugin() is None, reason="Orthanc's DICOMweb plugin is not installed (apt-get install -y orthanc-dicomweb)")
def test_seg_goes_back_by_stow_rs(orthanc: Orthanc, make_series, tiny_model: Path, tmp_path: Path, running_gateways) -> None:
    orthanc.start()
    gateway = start_gateway(tmp_path, tiny_model, running_gateways, destinations=[orthanc.dicomweb])
    orthanc.add_modality("medseg", "MEDSEG", gateway.scp.port)
    files = make_series("stow")
    orthanc.store_to("medseg", [orthanc.upload(files)])

    (job,) = wait_for(lambda: done_jobs(gateway), 60, "the job to be done")
    assert job["sent"] == [orthanc.dicomweb]
    (seg_id,) = orthanc.seg_instances()
    check_seg_of(orthanc.dataset(seg_id), files)


@pytest.mark.skipif(dicomweb_plugin() is None, reason="Orthanc's DICOMweb plugin is not installed (apt-get install -y orthanc-dicomweb)")
def test_pull_a_series_by_qido_and_wado(orthanc: Orthanc, make_series, tmp_path: Path) -> None:
    from medseg.errors import MedsegInputError
    from medseg.gateway.dicomweb import fetch_series, find_image_series
    from medseg.io.dicom import read_dicom_series

    orthanc.start()
    files = make_series("pull")
    orthanc.upload(files)
    study = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    (found,) = find_image_series(orthanc.dicomweb, study)
    assert found["modality"] == "CT" and found["instances"] == len(files)
    pulled = fetch_series(orthanc.dicomweb, study, None, tmp_path / "pulled")
    _, _, series = read_dicom_series(tmp_path / "pulled")
    assert set(series.sop_instance_uids) == {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    assert len(pulled) == len(files)
    with pytest.raises(MedsegInputError, match="study 1.2.3.4 not found"):
        fetch_series(orthanc.dicomweb, "1.2.3.4", None, tmp_path / "none")
