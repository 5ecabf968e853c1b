"""DICOMweb against a real Orthanc: `medseg predict --dicomweb ... --send-to ...`, the gateway's STOW-RS receiver,
HTTPS with a self-signed certificate and bearer tokens, and one SEG identity per series + model."""

from __future__ import annotations

import shutil
import socket
from contextlib import ExitStack
from pathlib import Path

import pydicom
import pytest
import requests
from pydicom.data import get_testdata_file

from medseg.gateway.sender import dicomweb_client
from tests.conftest import run_medseg_captured
from tests.gateway.conftest import http_json
from tests.gateway.orthanc import HttpsProxy, Orthanc, check_seg_of, dicomweb_plugin, free_port, wait_for
from tests.gateway.test_orthanc_end_to_end import done_jobs, start_gateway
from tests.gateway.test_tls import make_certificate

needs_dicomweb = pytest.mark.skipif(dicomweb_plugin() is None, reason="Orthanc's DICOMweb plugin is not installed (apt-get install -y orthanc-dicomweb)")
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a test certificate")
TOKEN_ENV = "MEDSEG_TEST_DICOMWEB_TOKEN"


def study_of(files: list[Path]) -> str:
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@needs_dicomweb
def test_predict_pulls_by_dicomweb_and_sends_the_seg_once(orthanc: Orthanc, make_series, tiny_model: Path, tmp_path: Path, capsys) -> None:
    orthanc.start()
    files = make_series("cli")
    orthanc.upload(files)
    orthanc.upload(make_series("cli-other")[:3])  # another study on the server: not the one pulled
    study = study_of(files)
    series = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    common = ("-m", str(tiny_model), "--device", "cpu", "-q")

    code, _, err = run_medseg_captured(capsys, "predict", "--dicomweb", orthanc.dicomweb, "--study", study,
                                       "--send-to", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}", *common)
    assert code == 0, err
    (seg_id,) = orthanc.seg_instances()
    seg = orthanc.dataset(seg_id)
    check_seg_of(seg, files)

    # again, by STOW-RS and with --series and -o: the same SEG identity, so Orthanc still holds one SEG
    code, _, err = run_medseg_captured(capsys, "predict", "--dicomweb", orthanc.dicomweb + "/", "--study", study, "--series", series,
                                       "-o", str(tmp_path / "out"), "--send-to", orthanc.dicomweb, *common)
    assert code == 0, err
    kept = pydicom.dcmread(tmp_path / "out" / f"{series}.seg.dcm")
    assert (kept.SOPInstanceUID, kept.SeriesInstanceUID) == (seg.SOPInstanceUID, seg.SeriesInstanceUID)
    assert (tmp_path / "out" / f"{series}.nii.gz").is_file()  # -o a folder with --send-to: both formats
    assert orthanc.seg_instances() == [seg_id]
    code, _, err = run_medseg_captured(capsys, "predict", "-i", str(files[0].parent), "--send-to", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}", *common)
    assert code == 0, err  # a local series folder, the SEG sent: the same instance again
    assert orthanc.seg_instances() == [seg_id]

    # an unknown study or series, a server that does not answer: one line, exit 1, nothing written
    dead = f"http://127.0.0.1:{free_port()}/dicom-web"
    for args, message in (
        (("--dicomweb", orthanc.dicomweb, "--study", "1.2.3.4"), "study 1.2.3.4 not found"),
        (("--dicomweb", orthanc.dicomweb, "--study", study, "--series", "1.2.3.4.5"), "WADO-RS of series 1.2.3.4.5 of study"),
        (("--dicomweb", dead, "--study", study), f"{dead}: QIDO-RS search of study {study} failed"),
    ):
        code, _, err = run_medseg_captured(capsys, "predict", *args, "-o", str(tmp_path / "bad"), "--send-to", orthanc.dicomweb, *common)
        assert code == 1 and message in one_error_line(err), err
        assert not (tmp_path / "bad").exists()
    assert orthanc.seg_instances() == [seg_id]


@pytest.mark.parametrize("args, message", [
    (("--study", "1.2.3"), "--study and --series pull from a DICOMweb server: give --dicomweb URL"),
    (("--dicomweb", "http://127.0.0.1:9/dicom-web"), "--dicomweb needs --study UID"),
    (("--dicomweb", "pacs:8042", "--study", "1.2"), "--dicomweb pacs:8042: expected an http(s):// DICOMweb root"),
    (("--dicomweb", "http://127.0.0.1:9/dicom-web", "--study", "1.2", "--send-to", "PACS@host"), "--send-to PACS@host: expected AE@host:port"),
    (("--dicomweb", "http://127.0.0.1:9/dicom-web", "--study", "1.2"), "no output given (-o); without -o, --send-to is needed"),
    (("--dicomweb", "http://x/dicom-web", "--study", "1.2", "--send-to", "A@h:1", "--output-format", "nifti"), "--send-to sends a DICOM SEG"),
    (("-i", "x", "--dicomweb", "http://x/dicom-web", "--study", "1.2", "-o", "o"), "give either -i or --dicomweb, not both"),
    (("-i", "x", "--send-to", "A@h:1", "--ca", "ca.pem"), "--ca is for HTTPS DICOMweb (--dicomweb, or --send-to an https:// URL)"),
    (("--dicomweb", "https://x/dicom-web", "--study", "1.2", "-o", "o", "--ca", "missing.pem"), "missing.pem: --ca: CA bundle not found"),
])
def test_remote_options_that_do_not_fit_are_one_line(args: tuple[str, ...], message: str, tiny_model: Path, tmp_path: Path, capsys) -> None:
    code, _, err = run_medseg_captured(capsys, "predict", *args, "-m", str(tiny_model))
    assert code == 1 and message in one_error_line(err)


@needs_dicomweb
def test_stow_rs_into_the_gateway_and_the_seg_back_by_stow(orthanc: Orthanc, make_series, tiny_model: Path, tmp_path: Path, running_gateways) -> None:
    orthanc.start()
    gateway = start_gateway(tmp_path, tiny_model, running_gateways, destinations=[orthanc.dicomweb],
                            dicomweb_receiver={"host": "127.0.0.1", "port": 0})
    assert gateway.stow is not None
    client = dicomweb_client(f"http://127.0.0.1:{gateway.stow.port}")
    files = make_series("stow-in")
    client.set_chunk_size(100_000)  # a large study goes chunked: the receiver must read that too
    response = client.store_instances([pydicom.dcmread(f) for f in files])
    assert len(response.ReferencedSOPSequence) == len(files) and "FailedSOPSequence" not in response

    with pytest.raises(requests.HTTPError) as info:  # a structured report is not an image: 409, FailureReason 0x0122
        client.store_instances([pydicom.dcmread(get_testdata_file("test-SR.dcm"))])
    assert info.value.response.status_code == 409
    assert info.value.response.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0x0122]

    (job,) = wait_for(lambda: done_jobs(gateway), 60, "the job of the series stored by STOW-RS")
    assert job["sent"] == [orthanc.dicomweb]
    (seg_id,) = orthanc.seg_instances()
    check_seg_of(orthanc.dataset(seg_id), files)
    assert http_json(f"http://127.0.0.1:{gateway.monitor.port}/health")["dicomweb_port"] == gateway.stow.port


@needs_dicomweb
@needs_openssl
def test_https_and_bearer_tokens(orthanc: Orthanc, make_series, tiny_model: Path, tmp_path: Path, running_gateways, capsys,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """STOW-RS into medseg over HTTPS with a token; the SEG out to an HTTPS DICOMweb server that wants a token too."""
    cert, key = make_certificate(tmp_path, "server")
    orthanc.start()
    monkeypatch.setenv(TOKEN_ENV, "s3cret-token")
    pacs = HttpsProxy(orthanc.dicomweb, cert, key, "s3cret-token")
    with ExitStack() as stack:
        stack.callback(pacs.stop)
        gateway = start_gateway(tmp_path, tiny_model, running_gateways, destinations=[{"target": pacs.url, "token_env": TOKEN_ENV, "ca": str(cert)}],
                                dicomweb_receiver={"host": "127.0.0.1", "port": 0, "token_env": TOKEN_ENV, "cert": str(cert), "key": str(key)})
        assert gateway.stow is not None
        url = f"https://127.0.0.1:{gateway.stow.port}"
        files = make_series("https")
        datasets = [pydicom.dcmread(f) for f in files]
        silent = socket.create_connection(("127.0.0.1", gateway.stow.port))  # never says hello: must not block others
        stack.callback(silent.close)
        auth = {"Authorization": "Bearer s3cret-token"}
        assert requests.post(f"{url}/studies", data=b"{}", headers={**auth, "Content-Type": "application/json"}, verify=str(cert), timeout=10).status_code == 415
        assert requests.post(f"{url}/series", data=b"", headers=auth, verify=str(cert), timeout=10).status_code == 404
        with pytest.raises(requests.HTTPError) as info:  # the right CA, no token
            dicomweb_client(url, verify=str(cert)).store_instances(datasets[:1])
        assert info.value.response.status_code == 401
        with pytest.raises(requests.exceptions.SSLError):  # the token, but the certificate is not trusted
            dicomweb_client(url, TOKEN_ENV).store_instances(datasets[:1])
        with pytest.raises(requests.ConnectionError):  # plain HTTP to the HTTPS port
            dicomweb_client(url.replace("https", "http"), TOKEN_ENV).store_instances(datasets[:1])
        response = dicomweb_client(url, TOKEN_ENV, verify=str(cert)).store_instances(datasets)
        assert len(response.ReferencedSOPSequence) == len(files)

        (job,) = wait_for(lambda: done_jobs(gateway), 60, "the job of the series stored over HTTPS")
        assert job["sent"] == [pacs.url] and pacs.refused == 0  # the sender trusted the CA and sent the token
        (seg_id,) = orthanc.seg_instances()
        check_seg_of(orthanc.dataset(seg_id), files)

        # the CLI pulls the series from and sends to the HTTPS server (REQUESTS_CA_BUNDLE trusts its certificate;
        # --token-env): the gateway's SEG and the CLI's have one identity, so Orthanc still holds one
        orthanc.upload(files)
        cli = ("predict", "--dicomweb", pacs.url, "--study", study_of(files), "--send-to", pacs.url, "-m", str(tiny_model), "--device", "cpu", "-q")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        code, _, err = run_medseg_captured(capsys, *cli, "--token-env", TOKEN_ENV)
        assert code == 0, err
        assert orthanc.seg_instances() == [seg_id] and pacs.refused == 0
        code, _, err = run_medseg_captured(capsys, *cli)  # no token
        assert code == 1 and "QIDO-RS search of study" in one_error_line(err) and "401" in err and pacs.refused == 1
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        code, _, err = run_medseg_captured(capsys, *cli, "--token-env", TOKEN_ENV)  # the certificate not trusted
        assert code == 1 and "QIDO-RS search of study" in one_error_line(err) and "SSL" in err


@needs_dicomweb
@needs_openssl
def test_predict_trusts_a_private_ca_given_with_ca(orthanc: Orthanc, make_series, tiny_model: Path, tmp_path: Path, capsys,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``--ca PATH``: pull from and send to an HTTPS DICOMweb server whose certificate a private CA signed
    (the gateway's destination ``ca``); that bundle alone is trusted, whatever REQUESTS_CA_BUNDLE says."""
    cert, key = make_certificate(tmp_path, "server")
    other, _ = make_certificate(tmp_path, "other")
    (tmp_path / "not-a-ca.pem").write_text("not a certificate\n")
    orthanc.start()
    monkeypatch.setenv(TOKEN_ENV, "ca-token")
    pacs = HttpsProxy(orthanc.dicomweb, cert, key, "ca-token")
    try:
        files = make_series("ca")
        orthanc.upload(files)
        cli = ("predict", "--dicomweb", pacs.url, "--study", study_of(files), "--send-to", pacs.url, "--token-env", TOKEN_ENV,
               "-m", str(tiny_model), "--device", "cpu", "-q")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))  # the environment trusts another CA: --ca wins
        code, _, err = run_medseg_captured(capsys, *cli, "--ca", str(cert))
        assert code == 0, err
        (seg_id,) = orthanc.seg_instances()
        check_seg_of(orthanc.dataset(seg_id), files)
        assert pacs.refused == 0

        code, _, err = run_medseg_captured(capsys, *cli, "--ca", str(other))  # the wrong CA: refused, one line
        assert code == 1 and "QIDO-RS search of study" in one_error_line(err) and "SSL" in err
        code, _, err = run_medseg_captured(capsys, *cli, "--ca", str(tmp_path / "not-a-ca.pem"))
        assert code == 1 and "not-a-ca.pem: --ca: not a PEM CA bundle" in one_error_line(err)
        assert orthanc.seg_instances() == [seg_id]
    finally:
        pacs.stop()
