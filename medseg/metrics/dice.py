"""Dice from per-class tp/fp/fn counts, accumulated on the device.

One ``bincount`` over ``ref * L + pred`` gives the whole confusion matrix of a case in one pass, on
whatever device the label maps live; the host syncs once per call. This replaces MONAI's one-hot
``DiceMetric`` in our loops (same values within 1e-6, asserted by a test; faster and without a one-hot
copy of the volume: see benchmarks/).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

#: Dice (and IoU) of a label absent from both prediction and reference: a correct "nothing there".
EMPTY_SCORE = 1.0


def _as_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.as_tensor() if hasattr(x, "as_tensor") else x
    return torch.from_numpy(np.ascontiguousarray(x))


def label_counts(
    pred: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray, labels: Sequence[int]
) -> torch.Tensor:
    """Per-label ``(tp, fp, fn)`` counts of two label maps of the same shape.

    Args:
        pred: predicted label map, any shape, integer values.
        ref: reference label map, same shape.
        labels: label values to count (other values count as "none of these").

    Returns:
        ``(len(labels), 3)`` int64 tensor on the inputs' device: columns tp, fp, fn.
    """
    p, r = _as_tensor(pred), _as_tensor(ref)
    if p.shape != r.shape:
        raise ValueError(f"prediction shape {tuple(p.shape)} != reference shape {tuple(r.shape)}")
    device = p.device
    r = r.to(device)
    n = len(labels)
    if [int(v) for v in labels] == list(range(n)) and n > 0 and _within(p, n) and _within(r, n):
        # labels 0..n-1 and no other value (the usual case): one pass builds ref * n + pred in the
        # narrowest dtype that holds n^2 (uint8 up to 16 classes), no lookup table, no "other" bin
        small = p.dtype == r.dtype == torch.uint8 and n * n <= 256
        flat = r.reshape(-1).to(torch.uint8 if small else torch.int32).mul(n).add_(p.reshape(-1))
        cm = torch.bincount(flat, minlength=n * n).reshape(n, n)
        tp = cm.diagonal()
        return torch.stack([tp, cm.sum(0) - tp, cm.sum(1) - tp], dim=1)
    top = int(max(max(labels, default=0), 0)) + 1
    # value -> index lookup (index n = "other"), so arbitrary label values (e.g. BraTS 4) cost nothing
    lut = torch.full((top,), n, dtype=torch.long, device=device)
    lut[torch.as_tensor(list(labels), dtype=torch.long, device=device)] = torch.arange(n, device=device)
    pi = lut[p.reshape(-1).long().clamp(0, top - 1)]
    ri = lut[r.reshape(-1).long().clamp(0, top - 1)]
    if top > 1:  # values above the largest label are "other"
        pi = torch.where(p.reshape(-1).long() >= top, n, pi)
        ri = torch.where(r.reshape(-1).long() >= top, n, ri)
    cm = torch.bincount(ri * (n + 1) + pi, minlength=(n + 1) ** 2).reshape(n + 1, n + 1)  # rows ref, cols pred
    tp = cm.diagonal()[:n]
    fn = cm[:n].sum(1) - tp
    fp = cm[:, :n].sum(0) - tp
    return torch.stack([tp, fp, fn], dim=1)


def _within(x: torch.Tensor, n: int) -> bool:
    """Every value of the integer map ``x`` is in ``0..n-1`` (two reductions, no copy)."""
    if x.numel() == 0 or x.dtype.is_floating_point or x.dtype == torch.bool:
        return False
    return bool(x.max() < n) and (not x.dtype.is_signed or bool(x.min() >= 0))


def dice_from_counts(counts: torch.Tensor | np.ndarray) -> np.ndarray:
    """Dice per row of ``(..., 3)`` tp/fp/fn counts; rows with nothing in either map score :data:`EMPTY_SCORE`."""
    c = np.asarray(counts.cpu() if isinstance(counts, torch.Tensor) else counts, dtype=np.float64)
    tp, fp, fn = c[..., 0], c[..., 1], c[..., 2]
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), EMPTY_SCORE)


def iou_from_counts(counts: torch.Tensor | np.ndarray) -> np.ndarray:
    """Intersection over union per row of tp/fp/fn counts (empty in both: :data:`EMPTY_SCORE`)."""
    c = np.asarray(counts.cpu() if isinstance(counts, torch.Tensor) else counts, dtype=np.float64)
    tp, fp, fn = c[..., 0], c[..., 1], c[..., 2]
    denom = tp + fp + fn
    return np.where(denom > 0, tp / np.maximum(denom, 1), EMPTY_SCORE)


def dice(
    pred: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray, labels: Sequence[int]
) -> dict[int, float]:
    """Dice per label of one case.

    Example:
        >>> dice(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), labels=[1, 2])
        {1: 0.6666666666666666, 2: 0.6666666666666666}
    """
    scores = dice_from_counts(label_counts(pred, ref, labels))
    return {int(label): float(s) for label, s in zip(labels, scores)}


class DiceAccumulator:
    """Accumulates per-case counts on the device; gives per-case means and global (pooled) Dice.

    Global Dice pools tp/fp/fn of all cases before dividing (LiTS "Dice global"); the per-case mean
    averages each case's Dice (LiTS "Dice per case").

    Example:
        >>> acc = DiceAccumulator(labels=[1, 2])
        >>> acc.update(pred, ref)  # doctest: +SKIP
        >>> acc.per_case_mean(), acc.global_dice()  # doctest: +SKIP
    """

    def __init__(self, labels: Sequence[int]) -> None:
        self.labels = [int(v) for v in labels]
        self._counts: list[torch.Tensor] = []

    def update(self, pred: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray) -> np.ndarray:
        """Add one case (or a batch, first axis = cases, when ``pred.ndim`` > 3); returns its Dice."""
        counts = label_counts(pred, ref, self.labels)
        self._counts.append(counts)
        return dice_from_counts(counts)

    def reset(self) -> None:
        self._counts.clear()

    def case_counts(self) -> np.ndarray:
        """``(cases, labels, 3)`` counts (one host transfer)."""
        if not self._counts:
            return np.zeros((0, len(self.labels), 3), dtype=np.int64)
        return torch.stack([c.to(self._counts[0].device) for c in self._counts]).cpu().numpy()

    def per_case(self) -> np.ndarray:
        """``(cases, labels)`` Dice."""
        return dice_from_counts(self.case_counts())

    def per_case_mean(self) -> dict[int, float]:
        scores = self.per_case()
        return {label: float(scores[:, i].mean()) if len(scores) else float("nan") for i, label in enumerate(self.labels)}

    def global_dice(self) -> dict[int, float]:
        pooled = self.case_counts().sum(axis=0)
        return {label: float(s) for label, s in zip(self.labels, dice_from_counts(pooled))}
