"""BraTS region metrics: WT/TC/ET masks, nesting violations, region Dice and HD95 (pure functions).

Nesting violations, and how the claim experiment must measure them
-------------------------------------------------------------------
WT = {1, 2, 4}, TC = {1, 4}, ET = {4} are unions of labels, so the masks derived from *any* label map nest by
definition: counting violations on decoded label maps measures nothing. A violation is therefore defined on a
*region-mask triple* (K masks in general) as a head's decoder produces it: a voxel inside region k+1 but outside
its parent region k (ET outside TC, TC outside WT). :func:`nesting_violations` counts them per pair and as
distinct voxels.

Which decoders can violate nesting:

- Multi-level head, masks ``[p_k > 0.5]`` (or any single threshold): never, by construction (ordered offsets).
  Linear (or nearest) resampling of the probabilities keeps them ordered, so the predictor's geometry
  restoration keeps them nested too (cubic/sinc interpolation, with negative weights, would not).
- Softmax head decoded by argmax -> labels -> regions: never (label maps nest by definition). Decoded by the
  cumulative probabilities ``P(level >= k)`` (:func:`softmax_region_probabilities`) with one common
  threshold: never either, since ``P(level >= k)`` is non-increasing in k.
- Softmax head with *region-specific* thresholds ``t_k`` on those probabilities (tuned per region on held-out
  data, as BraTS entries do for ET): a voxel with ``P_TC > t_TC`` and ``P_WT <= t_WT`` is TC outside WT,
  possible whenever a child's threshold is below its parent's. This, and per-region post-processing, is how
  a softmax head "can" produce violations.
- Independent sigmoid region head (``NestedResUNet(head="sigmoid")``): at any threshold.

The claim experiment should report the violation count for each decoder it uses, naming the decoder:
multi-level at 0.5 (expected 0), softmax by argmax (0 by construction: say so rather than present it as a
finding), softmax with per-region thresholds tuned on the 20% held-out split, and optionally the independent
sigmoid head. :func:`nesting_violations_from_probabilities` covers the threshold-based decoders.

Dice and HD95 are the spine's (:mod:`medseg.metrics.dice`, :mod:`medseg.metrics.surface`) with its empty-mask
policy (both empty: Dice 1, HD95 0, the BraTS convention for a case without enhancing tumour; one empty: Dice 0,
HD95 = the image diagonal in mm). ``region_scores`` takes the two metric functions as arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medseg.data.brats_labels import REGION_NAMES, labels_to_regions
from medseg.metrics.dice import dice, label_counts
from medseg.metrics.surface import hd95

ArrayLike = np.ndarray | torch.Tensor


def _numpy(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def region_masks(labels: ArrayLike, convention: str = "auto") -> dict[str, np.ndarray]:
    """``{"WT", "TC", "ET"} -> bool mask`` from a BraTS label map (convention ``"2018"``, ``"2023"``, ``"auto"``).

    Example:
        >>> region_masks(np.array([0, 1, 2, 4]))["TC"].tolist()
        [False, True, False, True]
    """
    regions = labels_to_regions(_numpy(labels), convention)
    return dict(zip(REGION_NAMES, regions, strict=True))


@dataclass(frozen=True)
class NestingViolations:
    """Nesting violations of K stacked region masks (outermost first).

    Attributes:
        per_pair: voxels in region k+1 but not in region k, for k = 1..K-1 (BraTS: TC outside WT, ET outside TC).
        voxels: distinct voxels violating at least one pair.
        fraction: ``voxels`` over the voxels inside any region (0.0 when all masks are empty).
    """

    per_pair: tuple[int, ...]
    voxels: int
    fraction: float


def nesting_violations(regions: ArrayLike | Sequence[ArrayLike], axis: int = 0) -> NestingViolations:
    """Count voxels that lie in a region but outside its parent.

    Args:
        regions: K masks stacked on ``axis`` (outermost first, e.g. WT, TC, ET), or a sequence of K masks.
        axis: the stacking axis of an array input.

    Example:
        >>> wt = np.array([1, 1, 0, 0], bool); tc = np.array([1, 0, 1, 0], bool); et = np.array([0, 0, 1, 1], bool)
        >>> nesting_violations([wt, tc, et])
        NestingViolations(per_pair=(1, 1), voxels=2, fraction=0.5)
    """
    if isinstance(regions, (list, tuple)):
        masks = [_numpy(m).astype(bool) for m in regions]
    else:
        array = _numpy(regions)  # type: ignore[arg-type]  # not a list/tuple here
        masks = [np.take(array, k, axis=axis).astype(bool) for k in range(array.shape[axis])]
    if len(masks) < 2:
        return NestingViolations((), 0, 0.0)
    pair_masks = [child & ~parent for parent, child in zip(masks, masks[1:])]
    violating = np.logical_or.reduce(pair_masks)
    inside = int(np.logical_or.reduce(masks).sum())
    voxels = int(violating.sum())
    return NestingViolations(tuple(int(m.sum()) for m in pair_masks), voxels, voxels / inside if inside else 0.0)


def nesting_violations_from_probabilities(
    probabilities: ArrayLike, thresholds: float | Sequence[float] = 0.5, axis: int = 0
) -> NestingViolations:
    """Threshold K region probabilities (region k where ``p_k > t_k``), then :func:`nesting_violations`.

    Args:
        probabilities: K region probability maps stacked on ``axis`` (outermost first).
        thresholds: one threshold for all regions or one per region.
    """
    probs = _numpy(probabilities)
    k = probs.shape[axis]
    t = np.broadcast_to(np.asarray(thresholds, dtype=float), (k,))
    shape = [1] * probs.ndim
    shape[axis] = k
    return nesting_violations(probs > t.reshape(shape), axis=axis)


def softmax_region_probabilities(class_probabilities: ArrayLike, axis: int = 0) -> np.ndarray:
    """Nested region probabilities ``P(level >= k) = sum_{c >= k} q_c``, k = 1..C-1, from softmax levels.

    Args:
        class_probabilities: softmax over the contiguous levels (0 background, 1 oedema, 2 necrosis,
            3 enhancing), classes on ``axis``.

    Returns:
        ``C - 1`` region maps on ``axis`` (WT, TC, ET), non-increasing along it.
    """
    q = _numpy(class_probabilities)
    tail = np.flip(np.cumsum(np.flip(q, axis=axis), axis=axis), axis=axis)  # sum over c >= k
    return np.take(tail, range(1, q.shape[axis]), axis=axis)


def dice_binary(prediction: ArrayLike, reference: ArrayLike) -> float:
    """Dice of two binary masks with the spine's policy (:func:`medseg.metrics.dice.dice`): both empty -> 1.0."""
    p, r = _numpy(prediction).astype(np.uint8), _numpy(reference).astype(np.uint8)
    return dice(p != 0, r != 0, [1])[1] if p.size else 1.0


def hd95_binary(prediction: ArrayLike, reference: ArrayLike, spacing: Sequence[float] | None = None) -> float:
    """HD95 in mm of two binary masks (:func:`medseg.metrics.surface.hd95`; ``spacing`` default 1 mm).

    Spine policy: both empty -> 0, one empty -> the image diagonal in mm.
    """
    p, r = _numpy(prediction).astype(bool), _numpy(reference).astype(bool)
    return hd95(p, r, [1.0] * p.ndim if spacing is None else list(spacing))


def region_counts(prediction: ArrayLike, reference: ArrayLike) -> np.ndarray:
    """``(K, 3)`` tp/fp/fn counts of two ``(K, *spatial)`` region-mask stacks (one bincount per region).

    Feed :func:`medseg.metrics.dice.dice_from_counts` for Dice with the spine's empty policy.
    """
    pred, ref = _numpy(prediction).astype(bool), _numpy(reference).astype(bool)
    if pred.shape != ref.shape:
        raise ValueError(f"region stacks differ in shape: {pred.shape} and {ref.shape}")
    return np.stack([label_counts(p.astype(np.uint8), r.astype(np.uint8), [1]).numpy()[0] for p, r in zip(pred, ref)])


def region_scores(
    prediction: ArrayLike,
    reference: ArrayLike,
    spacing: Sequence[float] | None = None,
    *,
    names: Sequence[str] = REGION_NAMES,
    dice_fn: Callable[[ArrayLike, ArrayLike], float] = dice_binary,
    hd95_fn: Callable[[ArrayLike, ArrayLike, Sequence[float] | None], float] = hd95_binary,
) -> dict[str, dict[str, float]]:
    """Dice and HD95 per region of two stacked region-mask arrays ``(K, *spatial)``.

    Use :func:`medseg.data.brats_labels.labels_to_regions` to get the stacks from label maps.

    Returns:
        ``{"WT": {"dice": ..., "hd95": ...}, "TC": ..., "ET": ...}``.
    """
    pred, ref = _numpy(prediction), _numpy(reference)
    if pred.shape != ref.shape or pred.shape[0] != len(names):
        raise ValueError(f"expected two ({len(names)}, *spatial) stacks, got {pred.shape} and {ref.shape}")
    return {
        name: {"dice": dice_fn(p, r), "hd95": hd95_fn(p, r, spacing)}
        for name, p, r in zip(names, pred, ref, strict=True)
    }
