"""DIMSE over TLS: a self-signed certificate made in the test; plain associations and strangers get nothing."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pydicom
import pytest

from tests.gateway.conftest import SCU_AE
from tests.gateway.orthanc import wait_for
from tests.gateway.test_orthanc_end_to_end import done_jobs, start_gateway


def make_certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl); returns ``(cert, key)``."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a test certificate")
def test_dimse_over_tls_with_client_certificates(make_series, tiny_model: Path, tmp_path: Path, running_gateways) -> None:
    from pynetdicom import AE

    server_cert, server_key = make_certificate(tmp_path, "server")
    client_cert, client_key = make_certificate(tmp_path, "client")
    gateway = start_gateway(tmp_path, tiny_model, running_gateways,
                            tls={"cert": str(server_cert), "key": str(server_key), "ca": str(client_cert)})
    files = make_series("tls")
    datasets = [pydicom.dcmread(f) for f in files]

    def associate(cert: Path | None, key: Path | None):  # noqa: ANN202
        ae = AE(ae_title=SCU_AE)
        ae.add_requested_context(datasets[0].SOPClassUID, datasets[0].file_meta.TransferSyntaxUID)
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(server_cert))
        if cert is not None:
            context.load_cert_chain(str(cert), str(key))
        return ae.associate("127.0.0.1", gateway.scp.port, ae_title="MEDSEG", tls_args=(context, "127.0.0.1"))

    assert not associate(None, None).is_established  # no client certificate
    plain = AE(ae_title=SCU_AE)
    plain.add_requested_context(datasets[0].SOPClassUID, datasets[0].file_meta.TransferSyntaxUID)
    assert not plain.associate("127.0.0.1", gateway.scp.port, ae_title="MEDSEG").is_established  # no TLS at all
    assoc = associate(client_cert, client_key)
    assert assoc.is_established
    assert [int(assoc.send_c_store(ds).Status) for ds in datasets] == [0] * len(datasets)
    assoc.release()
    wait_for(lambda: done_jobs(gateway), 30, "the job of the series received over TLS")
