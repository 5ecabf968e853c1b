"""BraTS label conventions, nested levels and WT/TC/ET region masks, in both directions.

Conventions:

- ``"2018"`` (BraTS 2017-2021): 0 background, 1 necrosis / non-enhancing core (NCR/NET), 2 oedema (ED),
  4 enhancing tumour (ET).
- ``"2023"`` (BraTS 2023 and later releases, e.g. BraTS-GLI): the same classes with enhancing tumour stored as 3.

(The Decathlon's Task01_BrainTumour is *not* a BraTS convention: it stores 1 oedema, 2 non-enhancing, 3 enhancing.)

Levels (the nested order used by both heads of :mod:`medseg.networks.nested_resunet`): 0 background,
1 oedema, 2 necrosis/NCR, 3 enhancing. Regions: WT = level >= 1 = {1, 2, 4}, TC = level >= 2 = {1, 4},
ET = level >= 3 = {4}. The levels are also the contiguous class indices of the softmax head
(``DiceCELoss(to_onehot_y=True, softmax=True)`` on the level map): one data path serves both heads.

Every function takes a NumPy array or a torch tensor and returns the same kind.

Example:
    >>> import numpy as np
    >>> labels = np.array([0, 1, 2, 4])
    >>> labels_to_levels(labels, "2018").tolist()
    [0, 2, 1, 3]
    >>> levels_to_labels(labels_to_levels(labels, "2018"), "2023").tolist()
    [0, 1, 2, 3]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from medseg.errors import MedsegInputError

Array = TypeVar("Array", np.ndarray, torch.Tensor)

REGION_NAMES = ("WT", "TC", "ET")
LEVEL_NAMES = ("background", "oedema", "necrosis/non-enhancing core", "enhancing tumour")
# label value of each level, per convention
LEVEL_TO_LABEL = {"2018": (0, 2, 1, 4), "2023": (0, 2, 1, 3)}
CONVENTIONS = tuple(LEVEL_TO_LABEL)


@dataclass(frozen=True)
class ConventionReport:
    """Which BraTS convention a label map follows.

    Attributes:
        convention: ``"2018"`` or ``"2023"``.
        ambiguous: True when neither 3 nor 4 occurs (the default ``"2018"`` was assumed).
        message: one line for logs and the CLI.
    """

    convention: str
    ambiguous: bool
    message: str


def _unique(values: np.ndarray | torch.Tensor) -> set[int]:
    if isinstance(values, torch.Tensor):
        return {int(v) for v in torch.unique(values.detach().cpu())}
    return {int(v) for v in np.unique(np.asarray(values))}


def _check_convention(convention: str) -> str:
    if convention not in LEVEL_TO_LABEL:
        raise ValueError(f"convention must be one of {CONVENTIONS} or 'auto', got {convention!r}")
    return convention


def detect_convention(labels: np.ndarray | torch.Tensor, default: str = "2018") -> ConventionReport:
    """Detect the convention of a BraTS label map from the values it contains.

    A 4 means ``"2018"``, a 3 means ``"2023"``; neither (no enhancing tumour, or no tumour) is ambiguous and
    ``default`` is assumed (and said so in the message).

    Raises:
        MedsegInputError: values outside {0, 1, 2, 3, 4}, or both 3 and 4.
    """
    _check_convention(default)
    values = _unique(labels)
    unexpected = sorted(values - {0, 1, 2, 3, 4})
    if unexpected:
        raise MedsegInputError(None, f"label map has values {unexpected}; BraTS labels are 0, 1, 2 and 4 (or 3)")
    if {3, 4} <= values:
        raise MedsegInputError(None, "label map has both 3 and 4; BraTS uses one of them for enhancing tumour")
    if 4 in values:
        return ConventionReport("2018", False, "BraTS 2018 convention (enhancing tumour = 4)")
    if 3 in values:
        return ConventionReport("2023", False, "BraTS 2023 convention (enhancing tumour = 3)")
    return ConventionReport(
        default, True, f"no enhancing-tumour label (3 or 4) present: assumed the BraTS {default} convention"
    )


def convention_of_labels(values: Iterable[int]) -> str:
    """The convention of a label *set* (a model's or pipeline's labels): ``{0, 1, 2, 4}`` -> ``"2018"``,
    ``{0, 1, 2, 3}`` -> ``"2023"``.

    Raises:
        ValueError: any other set.
    """
    found = {int(v) for v in values}
    for convention, labels in LEVEL_TO_LABEL.items():
        if found == set(labels):
            return convention
    raise ValueError(f"labels {sorted(found)} are not a BraTS label set ({{0, 1, 2, 4}} or {{0, 1, 2, 3}})")


def _lookup(values: Array, table: list[int]) -> Array:
    """``table[values]`` for integer arrays (values must be valid indices)."""
    if isinstance(values, torch.Tensor):
        return torch.as_tensor(table, device=values.device)[values.long()]
    return np.asarray(table, dtype=np.int64)[np.asarray(values).astype(np.int64)]


def labels_to_levels(labels: Array, convention: str = "auto") -> Array:
    """BraTS labels -> levels (0 background, 1 oedema, 2 necrosis, 3 enhancing), int64.

    Args:
        labels: integer label map (any shape).
        convention: ``"2018"``, ``"2023"`` or ``"auto"`` (:func:`detect_convention`, ambiguous -> 2018).

    Raises:
        MedsegInputError: a value that the convention does not use.
    """
    convention = detect_convention(labels).convention if convention == "auto" else _check_convention(convention)
    allowed = set(LEVEL_TO_LABEL[convention])
    bad = sorted(_unique(labels) - allowed)
    if bad:
        raise MedsegInputError(
            None, f"label values {bad} are not in the BraTS {convention} convention {sorted(allowed)}"
        )
    table = [0] * (max(allowed) + 1)
    for level, label in enumerate(LEVEL_TO_LABEL[convention]):
        table[label] = level
    return _lookup(labels, table)


def levels_to_labels(levels: Array, convention: str = "2018") -> Array:
    """Levels 0..3 -> BraTS labels of ``convention`` (``"2018"``: 0, 2, 1, 4; ``"2023"``: 0, 2, 1, 3), int64."""
    bad = sorted(_unique(levels) - {0, 1, 2, 3})
    if bad:
        raise ValueError(f"levels must be in 0..3, got values {bad}")
    return _lookup(levels, list(LEVEL_TO_LABEL[_check_convention(convention)]))


def levels_to_regions(levels: Array, num_levels: int = 3, axis: int = 0) -> Array:
    """Nested region masks ``[levels >= k for k = 1..num_levels]`` stacked on ``axis`` (bool).

    For BraTS: WT, TC, ET. ``axis=1`` turns a ``(B, *spatial)`` level map into ``(B, 3, *spatial)``.
    """
    if isinstance(levels, torch.Tensor):
        return torch.stack([levels >= k for k in range(1, num_levels + 1)], dim=axis)
    return np.stack([np.asarray(levels) >= k for k in range(1, num_levels + 1)], axis=axis)


def regions_to_levels(regions: Array, axis: int = 0) -> Array:
    """Region masks (WT, TC, ET, ...) stacked on ``axis`` -> levels, int64.

    The level is the deepest region that contains the voxel (innermost wins), so masks that violate
    nesting are resolved as nnU-Net's region conversion does: ET outside TC still counts as enhancing.
    For nested masks this equals the number of regions containing the voxel.
    """
    if isinstance(regions, torch.Tensor):
        masks = torch.unbind(regions.bool(), dim=axis)
        levels = torch.zeros_like(masks[0], dtype=torch.int64)
    else:
        masks = [np.take(np.asarray(regions), k, axis=axis).astype(bool) for k in range(regions.shape[axis])]
        levels = np.zeros(masks[0].shape, dtype=np.int64)
    for k, mask in enumerate(masks, start=1):
        levels[mask] = k
    return levels


def labels_to_regions(labels: Array, convention: str = "auto", axis: int = 0) -> Array:
    """BraTS labels -> WT, TC, ET masks stacked on ``axis`` (bool)."""
    return levels_to_regions(labels_to_levels(labels, convention), axis=axis)


def regions_to_labels(regions: Array, convention: str = "2018", axis: int = 0) -> Array:
    """WT, TC, ET masks stacked on ``axis`` -> BraTS labels of ``convention`` (innermost region wins)."""
    return levels_to_labels(regions_to_levels(regions, axis=axis), convention)
