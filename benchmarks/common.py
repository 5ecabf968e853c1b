"""Shared pieces of the ratio benchmarks: interleaved timing, environment record, markdown table."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass
class Row:
    """One figure: medseg vs MONAI on the same module, input and settings.

    ``ratio`` is medseg / MONAI for times and memory (lower is better) and MONAI / medseg... never: for
    rates (iterations/s, samples/s) it is medseg / MONAI too, and ``better`` says which direction wins.
    """

    case: str
    setting: str
    metric: str
    medseg: float
    monai: float
    unit: str
    better: str = "lower"
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.medseg / self.monai if self.monai else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int, device: torch.device) -> dict[str, float]:
    """Median seconds per function; runs alternate (ABAB, then BABA...) after ``warmup`` rounds of each."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    sync(device)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for n in names if r % 2 == 0 else reversed(names):
            sync(device)
            t0 = time.perf_counter()
            fns[n]()
            sync(device)
            times[n].append(time.perf_counter() - t0)
    return {n: statistics.median(v) for n, v in times.items()}


def environment(device: torch.device, flags: dict[str, Any]) -> dict[str, Any]:
    """Versions, hardware and flags recorded with every result file."""
    import monai

    env: dict[str, Any] = {
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "flags": {
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            **flags,
        },
    }
    return env


def markdown(rows: list[Row], env: dict[str, Any]) -> str:
    """The result table (ratio = medseg / MONAI; for rates higher is better)."""
    head = (
        f"device: {env['device_name']} ({env['device']}), torch {env['torch']}, MONAI {env['monai']}, CUDA {env['cuda']}, "
        f"cuDNN {env['cudnn']}, threads {env['torch_threads']}, load average {env['load_average']}\n"
        f"command: `{env.get('command', '')}`, {env.get('seconds', '?')} s in all\n\n"
        "| case | setting | metric | medseg | MONAI | ratio medseg/MONAI | target | met |\n|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        note = f" ({r.note})" if r.note else ""
        lines.append(
            f"| {r.case} | {r.setting} | {r.metric}{note} | {r.medseg:.4g} {r.unit} | {r.monai:.4g} {r.unit} | {r.ratio:.3f} | {r.target} | {met} |"
        )
    return head + "\n".join(lines) + "\n"
