"""What a model was trained on (``training_data`` of ``medseg.json``), and the warnings for inputs outside it.

The trainer profiles its training cases once (:func:`profile_cases`): their modalities, the range of
their voxel sizes, and per channel the range over the cases of the 1st, 50th and 99th intensity
percentile of the whole image and of the foreground (label > 0). ``medseg predict`` profiles each input
the same way (foreground: the predicted labels) and :func:`domain_warnings` says where it lies outside:

- a voxel size more than 2x finer or coarser than the training range (per sorted axis);
- an intensity percentile outside the training range widened by 10 % of the training intensity span:
  the 1st, 50th and 99th of the whole image, and the median of the foreground (the foreground of an input
  is the model's prediction, whose stray voxels would move its 1st/99th percentiles; the median holds).

Intensities are compared raw where the model sees absolute units (``preprocess.intensity`` ``ct`` or
``none``: HU for CT); for per-image normalisation (``mri``, ``minmax``) each percentile is first put
relative to the image's own 1st..99th percentile span, so a scanner's arbitrary scale does not warn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medseg.config import PreprocessConfig, Strict

PERCENTILES = (1, 50, 99)
#: an input voxel size this many times finer or coarser than the training range warns
SPACING_FACTOR = 2.0
#: intensity margin, as a fraction of the training intensity span (whole-image p1 .. p99 over all cases)
MARGIN = 0.1
#: at most this many voxels per channel enter the percentiles (an even stride over the volume)
SAMPLES = 1_000_000


class PercentileRanges(Strict):
    """``[min, max]`` over the training cases of each intensity percentile (keys ``p1``, ``p50``, ``p99``)."""

    p1: tuple[float, float]
    p50: tuple[float, float]
    p99: tuple[float, float]


class ChannelProfile(Strict):
    """One input channel: percentile ranges of the whole image and of the foreground (``None``: no foreground)."""

    whole: PercentileRanges
    foreground: PercentileRanges | None = None


class TrainingData(Strict):
    """``training_data`` of ``medseg.json``: the domain the model was trained on."""

    cases: int
    modalities: list[str]
    #: ``[min, max]`` voxel size in mm over the cases, per axis sorted finest first
    spacing: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    #: ``raw`` (the file's values, HU for CT) or ``relative`` (to each image's own p1..p99 span)
    intensity_units: Literal["raw", "relative"]
    channels: list[ChannelProfile]


def intensity_units(preprocess: PreprocessConfig) -> Literal["raw", "relative"]:
    return "raw" if preprocess.intensity in ("ct", "none") else "relative"


def channel_percentiles(channel: np.ndarray, mask: np.ndarray | None, units: str) -> dict[str, dict[str, float] | None]:
    """``{"whole": {"p1": .., "p50": .., "p99": ..}, "foreground": {...} or None}`` of one channel ``(I, J, K)``."""

    def percentiles(values: np.ndarray) -> dict[str, float]:
        values = values[:: max(1, values.size // SAMPLES)]
        return {f"p{q}": float(v) for q, v in zip(PERCENTILES, np.percentile(values, PERCENTILES))}

    values = np.asarray(channel, dtype=np.float32).ravel()
    whole = percentiles(values)
    fg = None
    if mask is not None and np.any(mask):
        fg = percentiles(values[np.asarray(mask).ravel() > 0])
    if units == "relative":
        low, span = whole["p1"], whole["p99"] - whole["p1"]
        scale = 1.0 / span if span > 0 else 0.0
        whole = {k: (v - low) * scale for k, v in whole.items()}
        fg = None if fg is None else {k: (v - low) * scale for k, v in fg.items()}
    return {"whole": whole, "foreground": fg}


def _ranges(rows: Sequence[Mapping[str, float]]) -> PercentileRanges:
    return PercentileRanges(**{k: (min(r[k] for r in rows), max(r[k] for r in rows)) for k in ("p1", "p50", "p99")})


def profile_cases(cases: Sequence[Mapping[str, Any]], modalities: Sequence[str], preprocess: PreprocessConfig) -> TrainingData | None:
    """Profile labelled training cases (``{"image": [paths], "label": path}``); ``None`` if none has an image."""
    from medseg.transforms.loading import load_case_arrays  # the training read path, so both ends see the same arrays

    units = intensity_units(preprocess)
    spacings, rows = [], []
    for case in cases:
        if not case.get("image"):
            continue
        image, label, geometry = load_case_arrays(case["image"], case.get("label"), modalities)
        mask = None if label is None else label[0].numpy() > 0
        spacings.append(sorted(geometry.spacing))
        rows.append([channel_percentiles(c, mask, units) for c in image.numpy()])
    if not rows:
        return None
    array = np.asarray(spacings)
    channels = []
    for index in range(len(rows[0])):
        whole = [w for r in rows if (w := r[index]["whole"]) is not None]
        fg = [f for r in rows if (f := r[index]["foreground"]) is not None]
        channels.append(ChannelProfile(whole=_ranges(whole), foreground=_ranges(fg) if fg else None))
    lo, hi = array.min(0), array.max(0)
    spacing = ((float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1])), (float(lo[2]), float(hi[2])))
    return TrainingData(cases=len(rows), modalities=list(modalities), intensity_units=units, channels=channels,
                        spacing=tuple((round(a, 4), round(b, 4)) for a, b in spacing))


def _mm(values: Sequence[float]) -> str:
    return "x".join(f"{v:.3g}" for v in values)


def spacing_warning(spacing: Sequence[float], profile: TrainingData | None, target: Sequence[float] | None) -> str | None:
    """A voxel size far from the training range (or, for a package without a profile, from its target spacing)."""
    ordered = np.asarray(sorted(spacing), dtype=float)
    if profile is not None:
        low, high = np.asarray([r[0] for r in profile.spacing]), np.asarray([r[1] for r in profile.spacing])
        if np.all(ordered >= low / SPACING_FACTOR) and np.all(ordered <= high * SPACING_FACTOR):
            return None
        trained = " x ".join(f"{lo:.3g}" if lo == hi else f"{lo:.3g}-{hi:.3g}" for lo, hi in profile.spacing)
        return f"voxel size {_mm(spacing)} mm is far from the training data's {trained} mm"
    if target is None:
        return None
    ratio = ordered / np.asarray(sorted(target))
    if ratio.max() > SPACING_FACTOR or ratio.min() < 1 / SPACING_FACTOR:
        return f"voxel size {_mm(spacing)} mm is far from the model's {_mm(target)} mm"
    return None


def intensity_warnings(image: np.ndarray, labels: np.ndarray | None, profile: TrainingData) -> list[tuple[int, str]]:
    """``(channel, message)`` for each percentile of ``image`` ``(C, I, J, K)`` outside the training range."""
    notes = []
    unit = " (relative to the image's p1..p99)" if profile.intensity_units == "relative" else ""
    for index, (channel, trained) in enumerate(zip(image, profile.channels)):
        found = channel_percentiles(channel, labels, profile.intensity_units)
        span = max(trained.whole.p99[1] - trained.whole.p1[0], 1e-6)
        margin = MARGIN * span
        prefix = f"{profile.modalities[index]}: " if len(profile.channels) > 1 and index < len(profile.modalities) else ""
        for region, checked in (("whole", PERCENTILES), ("foreground", (50,))):
            values, ranges = found[region], getattr(trained, region)
            if values is None or ranges is None:
                continue
            outside = [f"p{q} {values[f'p{q}']:.4g} (trained {getattr(ranges, f'p{q}')[0]:.4g}..{getattr(ranges, f'p{q}')[1]:.4g})"
                       for q in checked
                       if not getattr(ranges, f"p{q}")[0] - margin <= values[f"p{q}"] <= getattr(ranges, f"p{q}")[1] + margin]
            if outside:
                where = "whole image" if region == "whole" else "foreground"
                notes.append((index, f"{prefix}intensities of the {where} lie outside the training data's{unit}: {', '.join(outside)}"))
    return notes


def domain_warnings(
    image: np.ndarray, labels: np.ndarray | None, spacing: Sequence[float], profile: TrainingData | None,
    target_spacing: Sequence[float] | None, files: Sequence[Path] = (),
) -> list[tuple[Path | None, str]]:
    """Every way an input lies outside what the model was trained on, as ``(file, message)``.

    ``image`` ``(C, I, J, K)`` raw intensities, ``labels`` ``(I, J, K)`` the prediction; ``files``: the
    input file of each channel (a warning about one channel names its file).
    """
    first = files[0] if files else None
    notes: list[tuple[Path | None, str]] = []
    spacing_note = spacing_warning(spacing, profile, target_spacing)
    if spacing_note:
        notes.append((first, spacing_note))
    if profile is not None and len(profile.channels) == len(image):
        for index, message in intensity_warnings(image, labels, profile):
            notes.append((files[index] if index < len(files) else first, message))
    return notes


__all__ = ["ChannelProfile", "PercentileRanges", "TrainingData", "domain_warnings", "intensity_units", "profile_cases", "spacing_warning"]
