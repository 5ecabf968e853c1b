"""OpenVINO runtime helpers: ONNX -> IR, and a compiled CPU model in float32.

Only the runtime (``openvino.Core``) is used, never the model converter ``openvino.convert_model``: the
converter starts OpenVINO's opt-out telemetry (a network call to Google Analytics unless the user has opted
out), the runtime has none. ``tests/inference/test_backends.py`` blocks sockets and asserts that nothing tries.

Precision: OpenVINO infers in bfloat16 by default on CPUs with AVX-512 BF16/AMX (logits then differ by ~1% of
their range from PyTorch's); ``INFERENCE_PRECISION_HINT=f32`` keeps the float32 agreement of the exports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medseg.errors import MedsegModelError


def openvino_available() -> bool:
    """Whether the ``openvino`` package imports (``pip install 'medseg[cpu-fast]'``)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def _core() -> Any:
    try:
        import openvino as ov
    except ImportError as exc:
        raise MedsegModelError("OpenVINO is not installed: pip install 'medseg[cpu-fast]'") from exc
    return ov, ov.Core()


def onnx_to_openvino(onnx_path: Path, xml_path: Path) -> None:
    """Read an ONNX file with the OpenVINO runtime and write it as IR (``.xml`` + ``.bin``, float32 weights)."""
    ov, core = _core()
    ov.save_model(core.read_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)


def compile_openvino(path: Path, threads: int | None = None) -> Any:
    """An OpenVINO ``CompiledModel`` on the CPU, float32, one stream (latency), ``threads`` inference threads."""
    _, core = _core()
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return core.compile_model(core.read_model(str(path)), "CPU", config)


__all__ = ["compile_openvino", "onnx_to_openvino", "openvino_available"]
