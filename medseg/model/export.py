"""Export a model package's network to ONNX or OpenVINO IR (``medseg export``; the fast CPU backends' source).

ONNX comes from PyTorch's TorchScript-based exporter (``torch.onnx.export(dynamo=False)``: it needs no
``onnxscript`` and handles every registered segmentation network); OpenVINO IR is read from that ONNX by the
OpenVINO runtime itself (``Core.read_model`` + ``save_model``). We deliberately do not call ``openvino.convert_model``:
that converter starts OpenVINO's opt-out telemetry, the runtime does not.

The batch axis is always dynamic (the window engine's last batch may be smaller). The spatial axes are dynamic
where the network allows it: the export is checked at the patch size and at a second size (first axis
doubled) against PyTorch; if the graph baked a size in, it is exported again at the patch size.

Agreement (what the tests and benchmarks assert): max |logit difference| <= 1e-4 x the logit range, and the
same argmax on >= 99.99% of voxels.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medseg.errors import MedsegModelError
from medseg.io.atomic import atomic_dir

FORMATS = ("onnx", "openvino")
#: ONNX opset of the exports (ONNX Runtime >= 1.14 and OpenVINO >= 2023 read it)
OPSET = 17
#: agreement bounds of an exported network with PyTorch
MAX_RELATIVE_DIFF, MIN_ARGMAX_AGREEMENT = 1e-4, 0.9999
INPUT, OUTPUT = "image", "logits"


@dataclass(frozen=True)
class ExportInfo:
    """What an export holds (written beside it as ``export.json``).

    Attributes:
        format: ``onnx`` or ``openvino``; file: the model file's name in the export folder.
        channels / patch_size: the network input ``(n, channels, *patch_size)``.
        dynamic: spatial axes dynamic (``False``: fixed at ``patch_size``; the batch axis is always dynamic).
        weights_sha256: the package's weights the export was made from.
        max_relative_diff / argmax_agreement: measured against PyTorch at the patch size on random input.
    """

    format: str
    file: str
    channels: int
    patch_size: tuple[int, ...]
    dynamic: bool
    weights_sha256: str
    opset: int = OPSET
    torch_version: str = torch.__version__
    max_relative_diff: float = 0.0
    argmax_agreement: float = 1.0


def refusal(network_name: str, output_kind: str) -> str | None:
    """Why a registered network is not exported (``None``: it is)."""
    if output_kind == "displacement":
        return (f"'{network_name}' is a registration network (moving and fixed images in, displacement fields out); "
                "export covers the segmentation networks that medseg predict runs")
    return None


def agreement(reference: np.ndarray, output: np.ndarray) -> tuple[float, float]:
    """``(max |difference| / logit range, fraction of voxels with the same argmax over axis 1)`` of ``(n, K, *spatial)``."""
    spread = float(reference.max() - reference.min()) or 1.0
    diff = float(np.abs(output.astype(np.float32) - reference).max()) / spread
    same = float((output.argmax(1) == reference.argmax(1)).mean()) if reference.shape[1] > 1 else float(((output > 0) == (reference > 0)).mean())
    return diff, same


def _torch_export(network: nn.Module, example: torch.Tensor, target: Path, dynamic: bool) -> None:
    spatial = {a: f"d{a - 2}" for a in range(2, example.ndim)} if dynamic else {}
    axes = {INPUT: {0: "n", **spatial}, OUTPUT: {0: "n", **spatial}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes: the size check catches them
        torch.onnx.export(network, (example,), str(target), dynamo=False, opset_version=OPSET, input_names=[INPUT],
                          output_names=[OUTPUT], dynamic_axes=axes, do_constant_folding=True)


def onnx_runner(path: Path, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """``(n, C, *spatial)`` float32 -> first output, with ONNX Runtime (CPU) if installed, else OpenVINO."""
    try:
        import onnxruntime as ort
    except ImportError:
        from medseg.model.openvino import compile_openvino

        compiled = compile_openvino(path, threads)
        return lambda x: np.array(compiled(np.ascontiguousarray(x))[0])
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {INPUT: np.ascontiguousarray(x, dtype=np.float32)})[0]


def _reference(network: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        out = network(x)
    if not isinstance(out, torch.Tensor):
        raise MedsegModelError(f"the network returns {type(out).__name__} in eval mode, not one logit tensor: cannot export it")
    return out.float().numpy()


def export_onnx(network: nn.Module, channels: int, patch_size: tuple[int, ...], target: Path, dynamic: bool = True) -> tuple[bool, float, float]:
    """Write ``network`` (eval mode, on the CPU) to the ONNX file ``target``; dynamic spatial axes where they hold.

    Returns:
        ``(dynamic, max relative difference, argmax agreement)`` at the patch size against PyTorch.

    Raises:
        MedsegModelError: the exporter fails, or the export disagrees with PyTorch beyond the bounds.
    """
    gen = torch.Generator().manual_seed(0)
    example = torch.randn((1, channels, *patch_size), generator=gen)
    checks = [torch.randn((2, channels, *patch_size), generator=gen)]
    if dynamic:
        checks.append(torch.randn((1, channels, 2 * patch_size[0], *patch_size[1:]), generator=gen))
    refs = [_reference(network, x) for x in checks]
    for attempt in (True, False) if dynamic else (False,):
        try:
            _torch_export(network, example, target, attempt)
        except Exception as exc:  # the exporter's own errors (unsupported operators, ...) in one line
            line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MedsegModelError(f"ONNX export failed: {line[:300]}") from exc
        results = []
        try:
            run = onnx_runner(target)
        except Exception:  # the runtime refuses the graph (e.g. shapes the tracer baked in wrongly for dynamic axes)
            run = None
        for x, ref in zip(checks if attempt else checks[:1], refs):
            try:
                results.append(agreement(ref, run(x.numpy())) if run is not None else (float("inf"), 0.0))
            except Exception:  # a size baked into the graph: the runtime refuses the second size
                results.append((float("inf"), 0.0))
        if all(d <= MAX_RELATIVE_DIFF and s >= MIN_ARGMAX_AGREEMENT for d, s in results):
            return attempt, *results[0]
    diff, same = results[0]
    raise MedsegModelError(f"the ONNX export disagrees with PyTorch (max relative logit difference {diff:.2e}, argmax agreement {same:.5f})")


def export_network(network: nn.Module, channels: int, patch_size: tuple[int, ...], folder: Path, fmt: str, weights_sha256: str,
                   dynamic: bool = True) -> ExportInfo:
    """Export into the (new, empty) ``folder``: ``model.onnx`` or ``model.xml``/``model.bin``, and ``export.json``."""
    if fmt not in FORMATS:
        raise MedsegModelError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    onnx_path = folder / "model.onnx"
    dyn, diff, same = export_onnx(network, channels, patch_size, onnx_path, dynamic)
    file = onnx_path.name
    if fmt == "openvino":
        from medseg.model.openvino import onnx_to_openvino

        onnx_to_openvino(onnx_path, folder / "model.xml")
        onnx_path.unlink()
        file = "model.xml"
    info = ExportInfo(fmt, file, channels, tuple(int(p) for p in patch_size), dyn, weights_sha256, max_relative_diff=diff, argmax_agreement=same)
    (folder / "export.json").write_text(json.dumps(asdict(info), indent=2) + "\n")
    return info


def export_package(package: Any, fmt: str, output: Path, force: bool = False, dynamic: bool = True) -> ExportInfo:
    """``medseg export``: the package's network into the folder ``output`` (written atomically, as a whole).

    Raises:
        MedsegModelError: a network that is not exported (one-line reason), or a failed export.
    """
    from medseg.networks import get_network_spec

    spec = get_network_spec(package.manifest.network.name)
    reason = refusal(spec.name, spec.output_kind)
    if reason:
        raise MedsegModelError(f"{package.path}: {reason}")
    if fmt not in FORMATS:
        raise MedsegModelError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    network = package.network.to("cpu").eval()
    channels = package.manifest.network.input_channels(len(package.manifest.modalities))
    with atomic_dir(output, force=force) as tmp:
        try:
            return export_network(network, channels, tuple(package.manifest.patch_size), tmp, fmt, package.weights_sha256, dynamic)
        except MedsegModelError as exc:
            raise MedsegModelError(f"{package.path}: {exc}") from exc


__all__ = ["FORMATS", "MAX_RELATIVE_DIFF", "MIN_ARGMAX_AGREEMENT", "OPSET", "ExportInfo", "agreement", "export_network", "export_onnx",
           "export_package", "onnx_runner", "refusal"]
