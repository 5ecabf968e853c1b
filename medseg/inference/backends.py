"""Inference backends: where the window engine's network runs (``medseg predict --backend``).

``torch`` runs the package's ``nn.Module``; ``openvino`` and ``onnxruntime`` run its export (see
:mod:`medseg.model.export`) on the CPU, behind the same :class:`~medseg.inference.engine.WindowEngine`
(windows, Gaussian stitching, TTA and the output head are unchanged: only ``forward`` differs). ``auto``
picks OpenVINO on the CPU when it is installed (``pip install 'medseg[cpu-fast]'``), else PyTorch.

The export is cached, keyed by the weights' sha256 and the export settings, in ``<package>/.medseg-cache/``
when the package folder is writable, else in ``$MEDSEG_CACHE`` or the user cache folder
(``$XDG_CACHE_HOME/medseg``, ``~/.cache/medseg``) or the temporary folder, and compiled once per process.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.errors import MedsegConfigError, MedsegModelError, MedsegOutputError
from medseg.io.atomic import atomic_dir
from medseg.model.export import OPSET, export_network, onnx_runner, refusal
from medseg.model.openvino import compile_openvino, openvino_available

BACKENDS = ("auto", "torch", "openvino", "onnxruntime")
CACHE_ENV = "MEDSEG_CACHE"
_FORMAT = {"openvino": "openvino", "onnxruntime": "onnx"}
#: compiled exports of this process, by (export file, threads)
_RUNNERS: dict[tuple[str, int], Callable[[torch.Tensor], torch.Tensor]] = {}

Runner = Callable[[torch.Tensor], torch.Tensor]


def resolve_backend(name: str, device: torch.device) -> str:
    """``auto`` -> ``openvino`` on the CPU when installed, else ``torch``; the others are checked against ``device``."""
    if name not in BACKENDS:
        raise MedsegConfigError(f"--backend {name}: expected one of {', '.join(BACKENDS)}")
    if name == "auto":
        return "openvino" if device.type == "cpu" and openvino_available() else "torch"
    if name != "torch" and device.type != "cpu":
        raise MedsegConfigError(f"--backend {name} runs on the CPU, the device is {device}: use --device cpu, or --backend torch")
    if name == "openvino" and not openvino_available():
        raise MedsegConfigError("--backend openvino: OpenVINO is not installed (pip install 'medseg[cpu-fast]')")
    if name == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise MedsegConfigError("--backend onnxruntime: ONNX Runtime is not installed (pip install onnxruntime)") from exc
    return name


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def cache_root(package_path: Path) -> Path:
    """Where exports are cached: ``<package>/.medseg-cache`` when the package folder is writable, else ``$MEDSEG_CACHE``,
    the user cache folder, or (a read-only home, e.g. the Docker image) the temporary folder."""
    if os.access(package_path, os.W_OK):
        return package_path / ".medseg-cache"
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "medseg"
    candidates = [Path(os.environ[CACHE_ENV])] if os.environ.get(CACHE_ENV) else []
    for folder in [*candidates, user]:
        if _writable(folder):
            return folder
    return Path(tempfile.gettempdir()) / "medseg-cache"


def export_key(weights_sha256: str, fmt: str, channels: int, roi: tuple[int, ...]) -> str:
    """The cache key: the weights and every export setting (format, input, opset, exporter version)."""
    settings = {"weights": weights_sha256, "format": fmt, "channels": channels, "roi": list(roi), "dynamic": False, "opset": OPSET,
                "torch": torch.__version__}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]


def cached_export(package: Any, fmt: str, channels: int, roi: tuple[int, ...]) -> Path:
    """The export file of ``package``'s network for windows ``(n, channels, *roi)``, made on first use."""
    sha = package.weights_sha256
    folder = cache_root(Path(package.path)) / f"{fmt}-{export_key(sha, fmt, channels, roi)}"
    file = folder / ("model.xml" if fmt == "openvino" else "model.onnx")
    if not file.is_file():
        network = package.network.to("cpu").eval()
        try:
            with atomic_dir(folder) as tmp:
                export_network(network, channels, roi, tmp, fmt, sha, dynamic=False)
        except MedsegOutputError:
            if not file.is_file():  # another process finished the same export first: use it; else a real error
                raise
    return file


def _openvino_runner(path: Path, threads: int) -> Runner:
    request = compile_openvino(path, threads).create_infer_request()

    def run(batch: torch.Tensor) -> torch.Tensor:
        request.infer({0: np.ascontiguousarray(batch.numpy(), dtype=np.float32)})
        return torch.from_numpy(request.get_output_tensor(0).data.copy())  # the request reuses its buffer

    return run


def _onnxruntime_runner(path: Path, threads: int) -> Runner:
    run = onnx_runner(path, threads)
    return lambda batch: torch.from_numpy(run(batch.numpy()))


def backend_runner(package: Any, backend: str, roi: tuple[int, ...]) -> Runner | None:
    """The window engine's network call for ``backend`` (``None`` for ``torch``): ``(n, C, *roi) -> (n, K, *roi)`` on the CPU.

    Raises:
        MedsegModelError: the package's network is not exported (one-line reason) or its export failed.
    """
    if backend == "torch":
        return None
    from medseg.networks import get_network_spec

    spec = get_network_spec(package.manifest.network.name)
    reason = refusal(spec.name, spec.output_kind)
    if reason:
        raise MedsegModelError(f"{package.path}: --backend {backend}: {reason}")
    channels = package.manifest.network.input_channels(len(package.manifest.modalities))
    path = cached_export(package, _FORMAT[backend], channels, tuple(int(r) for r in roi))
    threads = torch.get_num_threads()
    key = (str(path), threads)
    if key not in _RUNNERS:
        _RUNNERS[key] = (_openvino_runner if backend == "openvino" else _onnxruntime_runner)(path, threads)
    return _RUNNERS[key]





def select_backend(package: Any, backend: str, device: torch.device, roi: tuple[int, ...]) -> tuple[str, str | None, Runner | None]:
    """``(backend in use, note, runner)`` for a predictor: ``auto`` falls back to PyTorch (with a note) when the export fails."""
    name = resolve_backend(backend, device)
    try:
        return name, None, backend_runner(package, name, roi)
    except MedsegModelError as exc:
        if backend != "auto":
            raise
        return "torch", f"--backend auto: {exc}; running PyTorch", None
__all__ = ["BACKENDS", "CACHE_ENV", "backend_runner", "cache_root", "cached_export", "export_key", "resolve_backend", "select_backend"]
