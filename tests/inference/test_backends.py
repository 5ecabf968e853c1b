"""``--backend``: OpenVINO and ONNX Runtime behind the same window engine agree with PyTorch; the export is
cached by weights and settings and compiled once per process; OpenVINO reaches for no network."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.data.synthetic import ct_phantom, save_nifti
from medseg.errors import MedsegConfigError
from medseg.inference import backends
from medseg.inference.predictor import Predictor
from medseg.model.export import MAX_RELATIVE_DIFF, MIN_ARGMAX_AGREEMENT
from medseg.model.package import load_model_package

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
CPU = torch.device("cpu")


@pytest.fixture
def package(tmp_path: Path, tiny_model: Path) -> Path:
    """A private copy of the session's tiny model whose export cache starts empty (other tests, e.g. the gateway's
    `--backend auto` jobs, may have exported the shared one)."""
    return Path(shutil.copytree(tiny_model, tmp_path / "model", ignore=shutil.ignore_patterns(".medseg-cache")))


@pytest.fixture
def case(tmp_path: Path) -> Path:
    image, _, affine = ct_phantom(7)
    return save_nifti(tmp_path / "case.nii.gz", image, affine)


@pytest.mark.parametrize("backend,tta", [("openvino", True), ("onnxruntime", False)])
def test_backends_agree_with_pytorch(package: Path, case: Path, backend: str, tta: bool) -> None:
    reference = Predictor(load_model_package(package), CPU, tta=tta).predict_files([case], keep_probabilities=True)
    predictor = Predictor(load_model_package(package), CPU, tta=tta, backend=backend)
    assert predictor.backend == backend and predictor.engine.runner is not None
    result = predictor.predict_files([case], keep_probabilities=True)
    fast = predictor.predict_files([case])  # the label path (argmax on the grid / slab-wise restore)
    assert result.probabilities is not None and reference.probabilities is not None
    assert np.abs(result.probabilities - reference.probabilities).max() <= MAX_RELATIVE_DIFF
    assert (result.labels == reference.labels).mean() >= MIN_ARGMAX_AGREEMENT
    assert (fast.labels == reference.labels).mean() >= MIN_ARGMAX_AGREEMENT and fast.labels.shape == reference.labels.shape


def test_export_cached_by_weights_and_compiled_once(package: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    exports: list[Path] = []
    real = backends.export_network
    monkeypatch.setattr(backends, "export_network", lambda *a, **k: exports.append(a[3]) or real(*a, **k))
    first = Predictor(load_model_package(package), CPU, backend="openvino")
    again = Predictor(load_model_package(package), CPU, backend="openvino")
    assert len(exports) == 1 and first.engine.runner is again.engine.runner  # exported and compiled once
    (folder,) = (package / ".medseg-cache").iterdir()
    assert (folder / "model.xml").is_file() and folder.name.startswith("openvino-")
    Predictor(load_model_package(package), CPU, sw_batch_size=1, overlap=0.5, backend="openvino")  # same network input: no new export
    assert len(exports) == 1
    other = load_model_package(package)
    with torch.no_grad():
        next(other.network.parameters()).add_(1.0)
    from medseg.model.package import save_model_package

    changed = save_model_package(tmp_path / "changed", other.network, other.manifest)
    Predictor(load_model_package(changed), CPU, backend="openvino")
    assert len(exports) == 2  # new weights: new key
    writable = {package: False, tmp_path / "user-cache": False}  # read-only folders (root ignores permissions: patched)
    monkeypatch.setattr(backends.os, "access", lambda path, mode: writable.get(Path(path), True))
    monkeypatch.setenv(backends.CACHE_ENV, str(tmp_path / "cache"))
    assert backends.cache_root(package) == tmp_path / "cache"
    monkeypatch.setenv(backends.CACHE_ENV, str(tmp_path / "user-cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    writable[tmp_path / "user-cache" / "medseg"] = False
    assert backends.cache_root(package).name == "medseg-cache"  # nothing writable but the temporary folder


def test_auto_and_device_checks() -> None:
    assert backends.resolve_backend("auto", CPU) == "openvino"
    assert backends.resolve_backend("auto", torch.device("cuda")) == "torch"
    with pytest.raises(MedsegConfigError, match="runs on the CPU"):
        backends.resolve_backend("openvino", torch.device("cuda"))
    with pytest.raises(MedsegConfigError, match="expected one of"):
        backends.resolve_backend("tensorrt", CPU)


def test_openvino_export_and_predict_reach_for_no_network(package: Path, case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenVINO's telemetry lives in its model converter, which medseg never calls; sockets are blocked here
    and every attempt to open one is recorded."""
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    backends._RUNNERS.clear()
    result = Predictor(load_model_package(package), CPU, backend="openvino").predict_files([case])
    assert result.labels.shape == ct_phantom(7)[0].shape[:3]
    assert attempts == []


def test_cli_predict_backend(package: Path, case: Path, tmp_path: Path, capsys) -> None:
    from medseg.cli.main import main

    out = tmp_path / "labels.nii.gz"
    main(["predict", "-i", str(case), "-o", str(out), "-m", str(package), "--device", "cpu", "--backend", "onnxruntime"])
    assert out.is_file() and "backend: onnxruntime" in capsys.readouterr().err  # the console prints to stderr
    with pytest.raises(SystemExit):
        main(["predict", "-i", str(case), "-o", str(tmp_path / "x.nii.gz"), "-m", str(package), "--backend", "tensorrt"])
    assert "error: --backend tensorrt" in capsys.readouterr().err
