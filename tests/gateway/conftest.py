"""Gateway fixtures: phantom CT series (DICOM), a gateway config on loopback, and a real Orthanc per test."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from medseg.gateway.config import GatewayConfig, validate_gateway
from medseg.gateway.service import Gateway
from medseg.io.dicom_write import write_dicom_series
from medseg.io.geometry import Geometry, reorient
from medseg.io.image_io import read_image

from tests.gateway.orthanc import Orthanc, orthanc_binary

SCU_AE = "TESTSCU"


@pytest.fixture(scope="session")
def phantom_volume(tiny_run: Path) -> tuple[np.ndarray, Geometry]:
    """The tiny pipeline's test phantom, LPS-ordered integers (stored exactly by DICOM): (70, 58, 32) voxels."""
    array, geometry = read_image(next((tiny_run / "data" / "imagesTs").glob("*.nii.gz")))
    array, affine = reorient(np.rint(array), geometry.affine, "LPS")
    return array, Geometry(array.shape, affine)


@pytest.fixture
def make_series(phantom_volume: tuple[np.ndarray, Geometry], tmp_path: Path) -> Callable[[str], list[Path]]:
    """``make_series(seed)``: a phantom CT series of its own study (UIDs from the seed); its files in slice order."""

    def make(seed: str, **kwargs: Any) -> list[Path]:
        array, geometry = phantom_volume
        return write_dicom_series(tmp_path / "series" / seed, array, geometry, seed=seed, **kwargs)

    return make


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    """An Orthanc (not started: ``orthanc.start()``), stopped after the test."""
    if orthanc_binary() is None:
        pytest.skip("Orthanc is not installed (apt-get install -y orthanc orthanc-dicomweb; .ci/run does it)")
    server = Orthanc(tmp_path / "orthanc")
    yield server
    server.stop()


def gateway_config(work: Path, model: Path, **overrides: Any) -> GatewayConfig:
    """A gateway on free loopback ports that lets ORTHANC and TESTSCU store; 1 s series timeout, fast retries."""
    raw: dict[str, Any] = {
        "ae_title": "MEDSEG", "host": "127.0.0.1", "port": 0, "work_dir": str(work),
        "allowed_callers": [{"ae_title": "ORTHANC", "host": "127.0.0.1"}, {"ae_title": SCU_AE}],
        "routes": [{"name": "tiny-ct", "model": str(model), "modality": "CT"}],
        "series_timeout_s": 1.0, "device": "cpu", "retry": {"initial_s": 0.5, "max_s": 2.0},
        "http": {"host": "127.0.0.1", "port": 0},
    }
    raw.update(overrides)
    return validate_gateway(raw)


def write_gateway_yaml(path: Path, config: GatewayConfig) -> Path:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path


@pytest.fixture
def running_gateways() -> Iterator[list[Gateway]]:
    """Gateways appended here are stopped after the test."""
    started: list[Gateway] = []
    yield started
    for gateway in started:
        gateway.stop()


def http_json(url: str, method: str = "GET") -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as response:
        return json.loads(response.read())


def store_scu(files: list[Path], port: int, calling_ae: str = SCU_AE) -> list[int]:
    """C-STORE ``files`` to the gateway on 127.0.0.1:``port`` in one association; their statuses (-1: rejected)."""
    import pydicom
    from pynetdicom import AE

    ae = AE(ae_title=calling_ae)
    datasets = [pydicom.dcmread(f) for f in files]
    for uid in sorted({ds.SOPClassUID for ds in datasets}):
        ae.add_requested_context(uid, sorted({ds.file_meta.TransferSyntaxUID for ds in datasets}))
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDSEG")
    if not assoc.is_established:
        return [-1] * len(files)
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()
