"""The clinic image, for real: built offline by docker/build.sh, run with no network, a read-only root
file system, a read-only input folder, the default 64 MB /dev/shm, as a non-root user.

Run with ``pytest -m docker tests/docker`` (``.ci/run`` does when a Docker daemon is available). The base
image is ``$MEDSEG_DOCKER_BASE_IMAGE``, else the local image that shared/tools/docker-base-image.sh
imports (for machines without registry access), else the Dockerfile's default.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from medseg.io.geometry import Geometry, reorient
from medseg.io.image_io import read_image, write_image

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
LOCAL_BASE = "medseg-local/python:3.11-bookworm"
TAG = f"medseg-test:{os.getpid()}"


def _docker(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def image(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    if shutil.which("docker") is None or _docker("info", check=False, timeout=60).returncode != 0:
        pytest.fail("no Docker daemon answers (start one, e.g. with shared/tools/docker-base-image.sh)")
    base = os.environ.get("MEDSEG_DOCKER_BASE_IMAGE") or (LOCAL_BASE if _docker("image", "inspect", LOCAL_BASE, check=False).returncode == 0 else "")
    models = tmp_path_factory.mktemp("docker_models")
    shutil.copytree(tiny_model, models / "tiny")
    command = ["bash", str(REPO / "docker" / "build.sh"), "--models", str(models), "--tag", TAG]
    if base:
        command += ["--base-image", base]
    build = subprocess.run(command, capture_output=True, text=True, timeout=2400)
    assert build.returncode == 0, f"docker/build.sh failed:\n{build.stderr[-5000:]}"
    yield TAG
    if not os.environ.get("MEDSEG_DOCKER_KEEP"):
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
