"""What the gateway must survive: SIGKILL mid-job, a destination that is down, load, bad input, strangers."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom
import pytest
import requests
from pydicom.data import get_testdata_file

from medseg.gateway.jobs import segment_series
from medseg.gateway.service import Gateway

from tests.gateway.conftest import gateway_config, http_json, store_scu, write_gateway_yaml
from tests.gateway.orthanc import Orthanc, check_seg_of, free_port, wait_for
from tests.gateway.test_orthanc_end_to_end import done_jobs, start_gateway


def jobs_of(http_port: int) -> list[dict]:
    try:
        return http_json(f"http://127.0.0.1:{http_port}/jobs")["jobs"]
    except OSError:
        return []


def test_sigkill_mid_job_then_restart_sends_exactly_one_seg(orthanc: Orthanc, make_series, tiny_model: Path, tmp_path: Path) -> None:
    orthanc.start()
    port, http_port = free_port(), free_port()
    config = gateway_config(tmp_path / "gateway", tiny_model, port=port, http={"host": "127.0.0.1", "port": http_port},
                            destinations=[f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"])
    yaml_path = write_gateway_yaml(tmp_path / "gateway.yaml", config)
    orthanc.add_modality("medseg", "MEDSEG", port)
    command = [sys.executable, "-m", "medseg", "gateway", "--config", str(yaml_path)]
    logs = open(tmp_path / "gateway.log", "ab")  # noqa: SIM115
    first = subprocess.Popen(command, stdout=logs, stderr=subprocess.STDOUT)
    second = None
    try:
        wait_for(lambda: _health(http_port), 60, "the gateway to start")
        files = make_series("crash")
        orthanc.store_to("medseg", [orthanc.upload(files)])
        wait_for(lambda: any(j["state"] == "running" for j in jobs_of(http_port)), 30, "the job to run", every=0.02)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert orthanc.seg_instances() == [], "the job finished before the kill; the test proves nothing"
        assert not _health(http_port)  # the gateway is gone

        second = subprocess.Popen(command, stdout=logs, stderr=subprocess.STDOUT)
        (job,) = wait_for(lambda: [j for j in jobs_of(http_port) if j["state"] == "done"], 60, "the resumed job to be done")
        assert job["attempts"] == 2
        time.sleep(1.5)  # anything sent twice would be in Orthanc by now
        (seg_id,) = orthanc.seg_instances()
        check_seg_of(orthanc.dataset(seg_id), files)
        assert "resuming 1 job" in (tmp_path / "gateway.log").read_text()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
        logs.close()
    assert second is not None and second.returncode == 0  # SIGTERM: a clean stop


def _health(http_port: int) -> bool:
    try:
        return http_json(f"http://127.0.0.1:{http_port}/health")["status"] == "ok"
    except OSError:
        return False


def test_destination_down_is_retried_until_it_returns(orthanc: Orthanc, make_series, tiny_model: Path, tmp_path: Path, running_gateways) -> None:
    destination = f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"  # Orthanc not started yet: nothing listens there
    gateway = start_gateway(tmp_path, tiny_model, running_gateways, destinations=[destination])
    files = make_series("retry")
    assert store_scu(files, gateway.scp.port) == [0] * len(files)

    def waiting() -> list[dict]:
        jobs = http_json(f"http://127.0.0.1:{gateway.monitor.port}/jobs")["jobs"]
        return [j for j in jobs if j["state"] == "pending" and j["attempts"] >= 2 and "not reachable" in j["last_error"]]

    (job,) = wait_for(waiting, 60, "two failed sending attempts")
    assert destination in job["last_error"] and job["seg_path"]
    orthanc.start()
    (job,) = wait_for(lambda: done_jobs(gateway), 30, "the job to complete once the destination is back")
    assert job["last_error"] == "" and job["sent"] == [destination]
    (seg_id,) = orthanc.seg_instances()
    check_seg_of(orthanc.dataset(seg_id), files)


def test_a_lost_queue_does_not_duplicate_the_seg(orthanc: Orthanc, make_series, tiny_model: Path, tmp_path: Path, running_gateways) -> None:
    """A second gateway with a fresh work_dir (the queue's (series, model) record gone) segments the same series
    again: the SEG has the same identity (derived from the series and the model), so Orthanc keeps one."""
    orthanc.start()
    destination = f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"
    files = make_series("twice")
    sop_uids = []
    for attempt in ("first", "second"):
        gateway = start_gateway(tmp_path / attempt, tiny_model, running_gateways, destinations=[destination])
        assert store_scu(files, gateway.scp.port) == [0] * len(files)
        wait_for(lambda g=gateway: done_jobs(g), 60, f"the {attempt} gateway's job to be done")
        sop_uids.append([orthanc.dataset(i).SOPInstanceUID for i in orthanc.seg_instances()])
    assert len(sop_uids[0]) == 1 and sop_uids[1] == sop_uids[0]
    check_seg_of(orthanc.dataset(orthanc.seg_instances()[0]), files)


def test_five_studies_at_once_stores_never_wait_for_inference(orthanc: Orthanc, make_series, tiny_model: Path, tmp_path: Path, running_gateways) -> None:
    """Inference is held back until Orthanc finished sending all 5 studies: the stores cannot have waited for it."""
    gate, spans, lock = threading.Event(), [], threading.Lock()

    def gated(series: Path, model: Path, out: Path, device: str):  # the real segmentation, timed, after the gate
        assert gate.wait(60)
        start = time.monotonic()
        result = segment_series(series, model, out, device)
        with lock:
            spans.append((start, time.monotonic()))
        return result

    orthanc.start()
    config = gateway_config(tmp_path / "gateway", tiny_model, destinations=[f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"], concurrency=1)
    gateway = Gateway(config, segmenter=gated).start()
    running_gateways.append(gateway)
    orthanc.add_modality("medseg", "MEDSEG", gateway.scp.port)
    series = {seed: make_series(seed) for seed in ("load0", "load1", "load2", "load3", "load4")}
    ids = [orthanc.upload(files) for files in series.values()]
    jobs = [orthanc.store_to("medseg", [i], asynchronous=True)["ID"] for i in ids]

    def stored() -> bool:
        states = [requests.get(f"{orthanc.url}/jobs/{j}", timeout=5).json()["State"] for j in jobs]
        assert "Failure" not in states, states
        return all(s == "Success" for s in states)

    wait_for(stored, 60, "Orthanc to finish its 5 store jobs while inference is held")
    assert not done_jobs(gateway)
    gate.set()
    wait_for(lambda: len(done_jobs(gateway)) == 5, 90, "5 jobs to be done")
    spans.sort()
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:])), "jobs overlapped with concurrency 1"
    segs = [orthanc.dataset(i) for i in orthanc.seg_instances()]
    assert len(segs) == 5
    by_study = {s.StudyInstanceUID: s for s in segs}
    for files in series.values():
        check_seg_of(by_study[pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID], files)


def test_strangers_are_rejected(make_series, tiny_model: Path, tmp_path: Path, running_gateways) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    callers = [{"ae_title": "TESTSCU", "host": "127.0.0.1"}]
    gateway = start_gateway(tmp_path, tiny_model, running_gateways, allowed_callers=callers)
    files = make_series("stranger")[:1]
    assert store_scu(files, gateway.scp.port, calling_ae="INTRUDER") == [-1]
    ae = AE(ae_title="TESTSCU")  # the right AE title from another host (a second loopback address)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", gateway.scp.port, ae_title="MEDSEG", bind_address=("127.0.0.2", 0))
    assert assoc.is_rejected and not assoc.is_established
    assert store_scu(files, gateway.scp.port) == [0]  # the allowed caller from the allowed host


def test_bad_input_gets_a_status_or_a_failed_job_and_the_gateway_goes_on(make_series, tiny_model: Path, tmp_path: Path, running_gateways) -> None:
    gateway = start_gateway(tmp_path, tiny_model, running_gateways)
    report = Path(get_testdata_file("test-SR.dcm"))  # a structured report: not an image
    assert store_scu([report], gateway.scp.port) == [0x0122]

    files = make_series("gap")
    holed = files[:10] + files[11:]  # one slice missing in the middle
    assert store_scu(holed, gateway.scp.port) == [0] * len(holed)

    def failed() -> list[dict]:
        return [j for j in http_json(f"http://127.0.0.1:{gateway.monitor.port}/jobs")["jobs"] if j["state"] == "failed"]

    (job,) = wait_for(failed, 30, "the job of the series with a gap to fail")
    assert "missing slices" in job["last_error"] and "\n" not in job["last_error"]

    truncated = make_series("truncated")
    ds = pydicom.dcmread(truncated[5])
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]  # half of slice 5's pixels
    ds.save_as(truncated[5])
    statuses = store_scu(truncated, gateway.scp.port)
    assert statuses[5] == 0xA900 and statuses[:5] + statuses[6:] == [0] * (len(truncated) - 1)
    # the rest of that series now has a gap where slice 5 was: the job fails with the one-line reason
    wait_for(lambda: len(failed()) == 2, 30, "the job of the truncated series to fail")
    assert "missing slices" in failed()[1]["last_error"]
    good = make_series("after-gap")
    assert store_scu(good, gateway.scp.port) == [0] * len(good)
    wait_for(lambda: done_jobs(gateway), 30, "a good series after the bad ones")
    assert http_json(f"http://127.0.0.1:{gateway.monitor.port}/health")["jobs"] == {
        "pending": 0, "running": 0, "sending": 0, "done": 1, "failed": 2}


def test_logs_hold_uids_not_patient_data(make_series, tiny_model: Path, tmp_path: Path, running_gateways, caplog: pytest.LogCaptureFixture) -> None:
    for log_phi in (False, True):
        caplog.clear()
        gateway = start_gateway(tmp_path / str(log_phi), tiny_model, running_gateways, log_phi=log_phi)
        files = make_series(f"phi-{log_phi}", patient_id="SECRET-ID-42")
        with caplog.at_level("INFO", logger="medseg.gateway"):
            assert store_scu(files, gateway.scp.port) == [0] * len(files)
            wait_for(lambda: done_jobs(gateway), 30, "the job to be done")
        text = caplog.text
        assert pydicom.dcmread(files[0]).SeriesInstanceUID in text
        assert ("SECRET-ID-42" in text) is log_phi and ("Phantom^Medseg" in text) is log_phi
