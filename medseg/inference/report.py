"""Per-case reports (``medseg predict --report``): what went in, what model ran where, how long, what came out.

A report is one JSON per case: input paths and sha256, input geometry, model name and weights sha256,
library versions, device, seconds per phase (read, preprocess, network, restore, write), peak memory,
voxel count and volume per label, mean entropy per label (with ``--uncertainty``), warnings, and the
paths of the files written for the case (labels, DICOM SEG, preview PNG, entropy map).
"""

from __future__ import annotations

import hashlib
import os
import platform
import resource
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from medseg.model.package import sha256_file

REPORT_FORMAT = "medseg-report/1"
_VERSIONS = ("medseg", "torch", "monai", "numpy", "SimpleITK", "nibabel", "highdicom", "pydicom")


def versions() -> dict[str, str | None]:
    """Installed versions of medseg and the libraries that shape its results (``None``: not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def input_digests(paths: list[Path]) -> dict[str, Any]:
    """sha256 of each input file, and one digest over all of them (a DICOM series: over its sorted files)."""
    files = [{"path": str(p), "sha256": sha256_file(p)} for p in paths]
    combined = hashlib.sha256("".join(f["sha256"] for f in files).encode()).hexdigest()
    return {"files": files, "count": len(files), "sha256": files[0]["sha256"] if len(files) == 1 else combined}


class PeakMemory:
    """Peak resident memory of this process over one case (and peak CUDA memory on a CUDA device).

    On Linux the kernel's high-water mark is reset per case (``/proc/self/clear_refs``); elsewhere the
    process-wide peak so far is reported, and ``scope`` says which.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.scope = "process"

    def reset(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.scope = "case"
        except OSError:
            self.scope = "process"
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def read(self) -> dict[str, Any]:
        rss_mb = None
        if self.scope == "case":
            rss_mb = _vm_hwm_mb()
        if rss_mb is None:
            self.scope = "process"
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            rss_mb = peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
        out: dict[str, Any] = {"rss_mb": round(rss_mb, 1), "scope": self.scope}
        if self.device.type == "cuda":
            out["cuda_allocated_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        return out


def _vm_hwm_mb() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def case_report(
    *,
    case: str,
    inputs: dict[str, Any],
    geometry: dict[str, Any],
    model: dict[str, Any],
    device: str,
    device_reason: str,
    settings: dict[str, Any],
    timings: dict[str, float],
    memory: dict[str, Any],
    statistics: dict[str, Any],
    uncertainty: dict[str, Any] | None,
    outputs: dict[str, str],
    warnings: list[str],
    dicom: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the report of one case (keyword arguments only, so no field is passed in the wrong slot)."""
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "case": case,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "input": {**inputs, "geometry": geometry},
        "model": model,
        "versions": versions(),
        "host": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(), "pid": os.getpid()},
        "device": {"name": device, "reason": device_reason},
        "settings": settings,
        "seconds": {k: round(v, 4) for k, v in timings.items()},
        "peak_memory": memory,
        "labels": statistics,
        "warnings": warnings,
        "outputs": outputs,
    }
    if dicom is not None:
        report["input"]["dicom"] = dicom
    if uncertainty is not None:
        report["uncertainty"] = uncertainty
    return report


__all__ = ["PeakMemory", "REPORT_FORMAT", "case_report", "input_digests", "versions"]
