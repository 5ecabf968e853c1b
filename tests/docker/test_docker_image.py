"""The clinic image, for real: built offline by docker/build.sh, run with no network, a read-only root
file system, a read-only input folder, the default 64 MB /dev/shm, as a non-root user.

Run with ``pytest -m docker tests/docker`` (``.ci/run`` does when a Docker daemon is available). The base
image is ``$MEDSEG_DOCKER_BASE_IMAGE``, else the local image that shared/tools/docker-base-image.sh
imports (for machines without registry access), else the Dockerfile's default. ``MEDSEG_DOCKER_IMAGE=TAG``
uses that tag: an image already there is tested as it is (not rebuilt: rebuild after changing medseg),
otherwise it is built under that tag; either way it is kept, as with ``MEDSEG_DOCKER_KEEP=1``.

The gateway test runs the image as a DICOM node on the host's network against a real Orthanc on loopback
(tests/gateway/orthanc.py; ``.ci/run`` installs Orthanc).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
import yaml

from medseg.io.geometry import Geometry, reorient
from medseg.io.image_io import read_image, write_image

from tests.gateway.orthanc import Orthanc, check_seg_of, free_port, orthanc_binary, wait_for

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
LOCAL_BASE = "medseg-local/python:3.11-bookworm"
TAG = os.environ.get("MEDSEG_DOCKER_IMAGE") or f"medseg-test:{os.getpid()}"


def _docker(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def image(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("docker") is None or _docker("info", check=False, timeout=60).returncode != 0:
        pytest.fail("no Docker daemon answers (start one, e.g. with shared/tools/docker-base-image.sh)")
    if os.environ.get("MEDSEG_DOCKER_IMAGE") and _docker("image", "inspect", TAG, check=False).returncode == 0:
        yield TAG  # an image built before (MEDSEG_DOCKER_IMAGE): tested as it is, kept
        return
    base = os.environ.get("MEDSEG_DOCKER_BASE_IMAGE") or (LOCAL_BASE if _docker("image", "inspect", LOCAL_BASE, check=False).returncode == 0 else "")
    models = tmp_path_factory.mktemp("docker_models")
    shutil.copytree(tiny_model, models / "tiny")
    command = ["bash", str(REPO / "docker" / "build.sh"), "--models", str(models), "--tag", TAG]
    if base:
        command += ["--base-image", base]
    build = subprocess.run(command, capture_output=True, text=True, timeout=2400)
    assert build.returncode == 0, f"docker/build.sh failed:\n{build.stderr[-5000:]}"
    yield TAG
    if not (os.environ.get("MEDSEG_DOCKER_KEEP") or os.environ.get("MEDSEG_DOCKER_IMAGE")):
        _docker("rmi", "-f", TAG, check=False)


@pytest.fixture(scope="module")
def folders(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """in/ (read-only in the container): a NIfTI phantom and the same voxels as a DICOM series; out/."""
    from medseg.io.dicom_write import write_dicom_series

    root = tmp_path_factory.mktemp("docker_io")
    inputs = root / "in"
    array, geometry = read_image(next((tiny_run / "data" / "imagesTs").glob("*.nii.gz")))
    array, affine = reorient(np.rint(array), geometry.affine, "LPS")
    nifti = write_image(inputs / "phantom.nii.gz", array, Geometry(array.shape, affine), "image")
    write_dicom_series(inputs / "series", *read_image(nifti), seed="docker")
    for path in [inputs, *inputs.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return {"in": inputs, "root": root}


def _run(image: str, folders: dict[str, Path], name: str, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = folders["root"] / name
    out.mkdir()
    out.chmod(0o777)  # the image's user (uid 10001) writes here
    result = _docker(
        "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp", "--shm-size", "64m",
        "-v", f"{folders['in']}:/data/in:ro", "-v", f"{out}:/data/out", image, *args, check=False,
    )
    return result, out


def test_image_metadata(image: str) -> None:
    config = json.loads(_docker("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "10001:10001" and config["Entrypoint"] == ["medseg"]
    assert "selfcheck" in " ".join(config["Healthcheck"]["Test"])
    assert "MEDSEG_MODELS=/models" in config["Env"] and "MPLCONFIGDIR=/tmp/matplotlib" in config["Env"]


def test_selfcheck_runs_as_non_root_without_network(image: str, folders: dict[str, Path]) -> None:
    result, _ = _run(image, folders, "selfcheck", "selfcheck", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["user"]["uid"] == 10001 and not report["user"]["root"]
    assert report["device"]["reason"] == "CUDA not available: running on CPU"
    assert [m["name"] for m in report["models"]] == ["tiny"] and report["models"][0]["ok"]
    assert report["versions"]["highdicom"] and report["scratch"]["writable"]


def test_batch_predicts_nifti_and_dicom_in_their_geometry(image: str, folders: dict[str, Path]) -> None:
    result, out = _run(image, folders, "batch", "predict", "-m", "tiny", "-i", "/data/in", "-o", "/data/out", "--uncertainty", "-q")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["case"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert {c: r["status"] for c, r in rows.items()} == {"phantom": "ok", "series": "ok"}
    _, geometry = read_image(folders["in"] / "phantom.nii.gz")
    for case in ("phantom", "series"):
        for name in (f"{case}.nii.gz", f"{case}.entropy.nii.gz"):
            _, written = read_image(out / name)
            assert geometry.mismatch(written) is None, name
        assert (out / f"{case}.preview.png").stat().st_size > 1000
        report = json.loads((out / f"{case}.report.json").read_text())
        assert report["device"]["name"] == "cpu" and report["peak_memory"]["rss_mb"] > 0
    labels_nifti, _ = read_image(out / "phantom.nii.gz", "label")
    labels_dicom, _ = read_image(out / "series.nii.gz", "label")
    np.testing.assert_array_equal(labels_nifti, labels_dicom)
    assert {p.stat().st_uid for p in out.iterdir()} == {10001}  # written by the image's non-root user


def test_dicom_seg_from_the_container(image: str, folders: dict[str, Path]) -> None:
    import highdicom as hd

    from medseg.io.dicom import read_dicom_series

    result, out = _run(image, folders, "seg", "predict", "-m", "tiny", "-i", "/data/in/series", "-o", "/data/out/series.seg.dcm", "-q")
    assert result.returncode == 0, result.stderr[-3000:]
    _, geometry, series = read_dicom_series(folders["in"] / "series")
    seg = hd.seg.segread(out / "series.seg.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series.uid
    frames = seg.get_pixels_by_source_instance(list(series.sop_instance_uids), segment_numbers=[1, 2], combine_segments=True)
    assert frames.shape == (geometry.shape[2], geometry.shape[1], geometry.shape[0])


def test_gateway_in_the_container_segments_what_orthanc_sends(image: str, folders: dict[str, Path], tmp_path: Path) -> None:
    """``docker run ... gateway``: Orthanc C-STOREs a CT series to the container, which sends one SEG back."""
    if orthanc_binary() is None:
        pytest.skip("Orthanc is not installed (apt-get install -y orthanc orthanc-dicomweb; .ci/run does it)")
    orthanc = Orthanc(tmp_path / "orthanc").start()
    name = f"medseg-gateway-test-{os.getpid()}"
    try:
        dicom_port, http_port = free_port(), free_port()
        config, queue = tmp_path / "config", tmp_path / "queue"
        config.mkdir()
        queue.mkdir()
        queue.chmod(0o777)  # the image's user (uid 10001) keeps its queue here
        (config / "gateway.yaml").write_text(yaml.safe_dump({
            "ae_title": "MEDSEG", "host": "127.0.0.1", "port": dicom_port, "work_dir": "/var/lib/medseg",
            "allowed_callers": [{"ae_title": orthanc.aet, "host": "127.0.0.1"}],
            "routes": [{"name": "tiny-ct", "model": "/models/tiny", "modality": "CT"}],
            "destinations": [f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"],
            "series_timeout_s": 1.0, "device": "cpu", "http": {"host": "127.0.0.1", "port": http_port},
        }))
        for path in [config, *config.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        _docker("run", "-d", "--name", name, "--init", "--network", "host", "--read-only", "--tmpfs", "/tmp",
                "-v", f"{queue}:/var/lib/medseg", "-v", f"{config}:/config:ro", image, "gateway", "--config", "/config/gateway.yaml")
        jobs_url = f"http://127.0.0.1:{http_port}/jobs"

        def jobs() -> list[dict] | None:
            if _docker("inspect", "-f", "{{.State.Running}}", name, check=False).stdout.strip() != "true":
                raise AssertionError(f"the gateway container stopped: {_docker('logs', name, check=False).stderr[-3000:]}")
            try:
                return list(requests.get(jobs_url, timeout=2).json()["jobs"])
            except requests.ConnectionError:
                return None

        wait_for(lambda: jobs() is not None, 120, "the gateway's /jobs endpoint", every=0.5)
        files = sorted((folders["in"] / "series").iterdir())
        orthanc.add_modality("medseg", "MEDSEG", dicom_port)
        orthanc.store_to("medseg", [orthanc.upload(files)])  # Orthanc C-STOREs the series to the container

        (job,) = wait_for(lambda: [j for j in jobs() or [] if j["state"] in ("done", "failed")], 300, "the job to finish", every=1)
        assert job["state"] == "done", job
        assert job["sent"] == [f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"] and job["last_error"] == ""
        (seg_id,) = orthanc.seg_instances()
        check_seg_of(orthanc.dataset(seg_id), files)
        source = pydicom.dcmread(files[0], stop_before_pixels=True)
        assert job["series_uid"] == source.SeriesInstanceUID
        assert (queue / "queue.sqlite").stat().st_uid == 10001  # the queue, kept in the volume by the non-root user
        logs = _docker("logs", name).stderr
        assert source.SeriesInstanceUID in logs and str(source.PatientName) not in logs  # UIDs, no patient data
    finally:
        _docker("stop", "-t", "20", name, check=False, timeout=60)
        _docker("rm", "-f", name, check=False, timeout=60)
        orthanc.stop()
