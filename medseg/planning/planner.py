"""Experiment planning: a dataset fingerprint in, a pipeline (every value with its reason) out.

The rules follow the spirit of nnU-Net v2's ``ExperimentPlanner`` (re-implemented, nothing copied):

* target spacing: the median spacing per axis; when the coarsest axis is more than 3x the finest and has
  fewer than a third of the voxels of the largest axis (anisotropic, e.g. thick slices), that axis takes the 10th percentile of its spacings instead (so most
  cases are upsampled less along it), never finer than the other axes;
* intensity: CT clips to the foreground 0.5-99.5 percentiles and z-scores with the foreground mean and
  standard deviation (pooled over cases); MR (anything not CT) z-scores each channel over its non-zero voxels;
* patch: starts from a cube of the same physical extent per axis, clipped to the median case shape at the
  target spacing, and is shrunk along the axis with the largest patch/median ratio until one training step
  of the planned network fits the memory budget (measured on a GPU, else estimated, see
  :mod:`medseg.planning.memory`); batch size is what then fits (at least 2, at most 5 % of the dataset's voxels);
* the method's fixed choices (loss, optimiser, head, 2D/2.5D networks) come from :mod:`medseg.planning.methods`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from medseg.planning.fingerprint import Fingerprint
from medseg.planning.memory import (
    StepMemory,
    estimate_step_memory,
    measure_step_memory,
    round_patch,
    topology,
    unet_kwargs,
)

ANISOTROPY = 3.0
GiB = 1024**3


@dataclass(frozen=True)
class Target:
    """What the plan is for: ``device`` (``cuda``/``cpu``), its memory budget in bytes, and whether to measure."""

    device: str = "cpu"
    memory: int = 2 * GiB
    measure: bool = False

    @property
    def gpu(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def budget_text(self) -> str:
        return f"{self.memory / GiB:g} GB"


@dataclass
class Planned:
    """A planned value and why (the YAML comment)."""

    value: Any
    reason: str = ""


@dataclass
class Plan:
    """The pipeline as a nested mapping whose leaves may be :class:`Planned`, plus notes for the user."""

    tree: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def raw(self) -> dict[str, Any]:
        """The plain pipeline mapping (reasons dropped), for validation."""

        def strip(node: Any) -> Any:
            if isinstance(node, Planned):
                return strip(node.value)
            if isinstance(node, dict):
                return {k: strip(v) for k, v in node.items()}
            if isinstance(node, list):
                return [strip(v) for v in node]
            return node

        return strip(self.tree)


def plan_spacing(fp: Fingerprint) -> Planned:
    """Target spacing (RAS axis order, mm) by the median / 10th-percentile rule."""
    spacings = fp.spacings()
    median = np.median(spacings, axis=0)
    worst = int(np.argmax(median))
    others = [a for a in range(3) if a != worst]
    n = len(fp.cases)
    shape = np.median(fp.shapes(), axis=0)
    if median[worst] > ANISOTROPY * min(median[a] for a in others) and shape[worst] * ANISOTROPY < max(shape[a] for a in others):
        p10 = float(np.percentile(spacings[:, worst], 10))
        target = median.copy()
        target[worst] = max(p10, max(median[a] for a in others))
        reason = (
            f"median spacing of {n} cases; anisotropic (axis {'RAS'[worst]}: {median[worst]:.2f} mm > {ANISOTROPY:g}x the finest), "
            f"so that axis takes the 10th percentile of its spacings ({p10:.2f} mm)"
        )
        return Planned([round(float(s), 3) for s in target], reason)
    return Planned([round(float(s), 3) for s in median], f"median spacing of {n} cases")


def median_shape(fp: Fingerprint, spacing: list[float]) -> np.ndarray:
    """Median case shape (voxels, RAS order) after resampling to ``spacing``."""
    return np.median(fp.shapes() * fp.spacings() / np.asarray(spacing), axis=0)


def plan_intensity(fp: Fingerprint) -> dict[str, Any]:
    """The ``preprocess`` intensity keys: CT window and z-score from the foreground, or per-channel z-score."""
    ct = [m.upper() == "CT" for m in fp.modalities]
    if all(ct) and len(ct) == 1:
        stats = fp.intensity[0]
        lo, hi = round(stats["p0.5"], 1), round(stats["p99.5"], 1)
        if hi <= lo:
            hi = lo + 1.0
        return {
            "intensity": Planned("ct", "CT: clip to the foreground percentiles, then z-score (foreground mean and sd)"),
            "ct_window": Planned([lo, hi], f"foreground 0.5-99.5 percentiles of {len(fp.cases)} cases (HU)"),
            "ct_offset": Planned(round(stats["mean"], 2), "foreground mean (HU)"),
            "ct_scale": Planned(round(max(stats["std"], 1e-3), 2), "foreground standard deviation (HU)"),
        }
    why = "MR" if not any(ct) else "CT mixed with other modalities (one preset for all channels)"
    return {"intensity": Planned("mri", f"{why}: z-score each modality over its non-zero voxels")}


@dataclass
class PatchPlan:
    patch: list[int]
    batch: int
    kwargs: dict[str, Any]
    memory: int
    measured: bool
    reason_patch: str
    reason_batch: str


def plan_patch(
    fp: Fingerprint, spacing: list[float], in_channels: int, out_channels: int, target: Target, base: int, cap: int
) -> PatchPlan:
    """Largest patch (then batch) whose training step of the planned UNet fits ``target.memory``."""
    shape = median_shape(fp, spacing)
    start_voxels = (256**3) if target.gpu else (96**3)
    aspect = 1.0 / np.asarray(spacing)  # same physical extent per axis
    patch = aspect * (start_voxels / np.prod(aspect)) ** (1 / 3)
    patch = np.minimum(patch, shape)
    cache: dict[str, StepMemory] = {}

    def memory_of(p: list[int]) -> tuple[int, dict[str, Any]]:
        topo = topology(p, spacing)
        kwargs = unet_kwargs(in_channels, out_channels, topo, base, cap)
        key = repr(kwargs)
        if key not in cache:
            cache[key] = estimate_step_memory("unet", kwargs, topo.divisor)
        return cache[key].bytes(rounded(p), 2), kwargs

    def rounded(p: Any) -> list[int]:
        return round_patch(p, topology(p, spacing).divisor)

    budget = target.memory
    current = rounded(patch)
    steps = 0
    while True:
        need, kwargs = memory_of(current)
        if need <= budget or max(current) <= 8 or steps > 200:
            break
        axis = int(np.argmax(np.asarray(current) / shape))
        divisor = topology(current, spacing).divisor
        patch[axis] = max(current[axis] - divisor[axis], divisor[axis]) if current[axis] > divisor[axis] else current[axis] / 2
        current = rounded(patch)
        steps += 1
    measured = False
    if target.measure and target.gpu:
        device = torch.device(target.device)
        for _ in range(8):  # the estimate guides; the measurement decides
            need = measure_step_memory("unet", kwargs, current, 2, device)
            if need <= budget:
                break
            axis = int(np.argmax(np.asarray(current) / shape))
            patch[axis] = current[axis] * 0.8
            current = rounded(patch)
            kwargs = memory_of(current)[1]
        measured = True
    fixed = cache[repr(kwargs)].fixed if not measured else 0
    per_sample = max((need - fixed) / 2, 1)
    batch = max(2, int((budget - fixed) // per_sample))
    dataset_voxels = float(np.sum(np.prod(fp.shapes() * fp.spacings() / np.asarray(spacing), axis=1)))
    cap_5 = max(2, int(0.05 * dataset_voxels // math.prod(current)))
    batch_reason = f"largest batch whose step fits {target.budget_text}"
    if batch > cap_5:
        batch, batch_reason = cap_5, "at most 5% of the dataset's voxels per batch (nnU-Net's cap), at least 2"
    if not target.gpu and batch > 2:
        batch, batch_reason = 2, "CPU: 2 per step keeps a step short"
    how = "measured (one forward/backward on the device)" if measured else "estimated"
    ratio = ", ".join(f"{s:.0f}" for s in shape)
    reason = f"largest patch (<= median shape {ratio}) whose training step fits {target.budget_text}, {how}: {need / GiB:.2f} GB at batch 2"
    if steps == 0:
        reason = f"median shape at the target spacing ({ratio}), rounded to the network's divisor; step {how}: {need / GiB:.2f} GB at batch 2"
    return PatchPlan(current, batch, kwargs, need, measured, reason, batch_reason)


def spacing_outliers(fp: Fingerprint, factor: float = 2.0) -> list[str]:
    """Cases whose spacing along some axis is more than ``factor`` x off the dataset median."""
    spacings = fp.spacings()
    median = np.median(spacings, axis=0)
    out = []
    for case, s in zip(fp.cases, spacings):
        ratio = np.maximum(s / median, median / s)
        if ratio.max() > factor:
            out.append(f"{case.case}: spacing {', '.join(f'{v:.2f}' for v in s)} mm is over {factor:g}x off the median "
                       f"({', '.join(f'{v:.2f}' for v in median)} mm)")
    return out


def planning_warnings(fp: Fingerprint, folds: int = 5) -> list[str]:
    """What makes a plan or a cross-validation doubtful: few cases, rare labels, spacing outliers."""
    out = []
    n = len(fp.cases)
    if n < folds:
        out.append(f"{n} labelled case(s) cannot make {folds} folds (each fold needs at least one validation case)")
    elif n < 2 * folds:
        out.append(f"only {n} labelled cases for {folds} folds: each fold validates on {n // folds} case(s), scores will be noisy")
    for value, share in fp.label_presence.items():
        if share < 0.5:
            name = fp.labels.get(int(value), value)
            out.append(f"label {value} ({name}) is absent from {round((1 - share) * n)} of {n} cases")
    out += spacing_outliers(fp)
    return out


__all__ = ["Plan", "Planned", "Target", "median_shape", "plan_intensity", "plan_patch", "plan_spacing", "planning_warnings"]
