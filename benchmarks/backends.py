"""Case 9: the CPU backends (OpenVINO, ONNX Runtime) against PyTorch eager and MONAI, in one process.

Network phase: ``WindowEngine.labels`` with the backend's runner vs the same engine on PyTorch eager vs
``sliding_window_inference`` + argmax (same network weights, input, ROI, overlap, Gaussian, sw_batch_size).
File to file: the predictor (``--backend``) vs the predictor on PyTorch vs MONAI's tutorial chain (case 8's).
The export happens once, before timing (it is cached per package, like ``medseg predict``'s first run).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.common import Row, interleaved
from benchmarks.memory import PeakMemory
from benchmarks.prediction import medseg_labels, monai_labels


def available() -> list[str]:
    out = []
    for name, module in (("openvino", "openvino"), ("onnxruntime", "onnxruntime")):
        try:
            __import__(module)
            out.append(name)
        except ImportError:
            pass
    return out


def backend_cases(cfg: dict[str, Any], device: torch.device, net: nn.Module, classes: int) -> list[Row]:
    """Rows of case 9 (CPU only; nothing where no backend is installed)."""
    from benchmarks.e2e import make_case, predictor_for
    from medseg.inference.plan import Stitching

    if device.type != "cpu":
        return []
    rows: list[Row] = []
    roi, sw = tuple(cfg["roi"]), cfg["sw_batch_size"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src, package = make_case(root, cfg, net, classes)
        torch_predictor = predictor_for(package, device, "torch")
        size = tuple(cfg["sizes"][0])
        x = torch.randn(1, 1, *size, generator=torch.Generator().manual_seed(1))
        label = "x".join(map(str, size))
        host = Stitching(torch.device("cpu"), torch.float32)
        for backend in available():
            predictor = predictor_for(package, device, backend)  # exports (cached) and compiles once
            fns = {
                backend: lambda: medseg_labels(predictor.engine, host, x),
                "torch": lambda: medseg_labels(torch_predictor.engine, host, x),
                "monai": lambda: monai_labels(torch_predictor.network, x, roi, sw, device, "host", False),
            }
            t = interleaved(fns, cfg["repeats"], cfg["warmup"], device)
            setting = f"{label}, roi {'x'.join(map(str, roi))}, network phase"
            rows.append(Row("9 backend", setting, f"{backend} vs sliding_window_inference", t[backend], t["monai"], "s",
                            note=f"{t['monai'] / t[backend]:.2f}x faster"))
            rows.append(Row("9 backend", setting, f"{backend} vs PyTorch eager (MONAI column: torch)", t[backend], t["torch"], "s",
                            note=f"{t['torch'] / t[backend]:.2f}x faster"))
            ours, ref = fns[backend](), fns["monai"]()
            same = float((ours == ref).float().mean())
            rows.append(Row("9 backend", f"{label}, {backend}", "identical argmax fraction vs MONAI", same, 1.0, "", better="higher",
                            target=">= 0.9999", met=same >= 0.9999))
            rows.extend(_file_to_file(cfg, device, root, src, package, backend))
    return rows


def _file_to_file(cfg: dict[str, Any], device: torch.device, root: Path, src: Path, package: Path, backend: str) -> list[Row]:
    from benchmarks.e2e import medseg_file_to_file, monai_file_to_file

    import nibabel as nib

    who = {backend: lambda: medseg_file_to_file(src, root / f"{backend}.nii.gz", package, device, cfg, backend),
           "torch": lambda: medseg_file_to_file(src, root / "torch.nii.gz", package, device, cfg, "torch"),
           "monai": lambda: monai_file_to_file(src, root / "monai.nii.gz", package, device, cfg)}
    totals: dict[str, list[float]] = {k: [] for k in who}
    peaks: dict[str, int] = {}
    names = list(who)
    for r in range(cfg["repeats"] + cfg["warmup"]):
        for name in names if r % 2 == 0 else reversed(names):
            with PeakMemory() as mem:
                timing = who[name]()
            if r >= cfg["warmup"]:
                totals[name].append(timing["total"])
                peaks[name] = max(peaks.get(name, 0), mem.host)
    med = {k: float(np.median(v)) for k, v in totals.items()}
    ours = np.asarray(nib.load(str(root / f"{backend}.nii.gz")).dataobj)
    ref = np.asarray(nib.load(str(root / "torch.nii.gz")).dataobj)
    same = float((ours == ref).mean())  # the same predictor on PyTorch (MONAI's Invertd resamples differently)
    size = "x".join(map(str, cfg["e2e_size"]))
    input_mb = 4 * int(np.prod(cfg["e2e_size"])) / 2**20
    speedup = med["monai"] / med[backend]
    return [
        Row("9 backend", f"{size} .nii.gz, file to file", f"{backend} vs MONAI's chain", med[backend], med["monai"], "s",
            target=">= 1.8x faster", met=speedup >= 1.8 and same >= 0.9999, note=f"{speedup:.2f}x faster, argmax agreement with PyTorch {same:.5f}"),
        Row("9 backend", f"{size} .nii.gz, file to file", f"{backend} vs PyTorch eager (MONAI column: torch)", med[backend], med["torch"], "s",
            note=f"{med['torch'] / med[backend]:.2f}x faster"),
        Row("9 backend", f"{size}, host RAM", f"peak RSS growth, {backend}, file to file", peaks[backend] / 2**20, peaks["monai"] / 2**20, "MB",
            target="<= 4x input float32", met=peaks[backend] / 2**20 <= 4 * input_mb, note=f"{peaks[backend] / 2**20 / input_mb:.2f}x the input's {input_mb:.0f} MB"),
    ]


__all__ = ["available", "backend_cases"]
