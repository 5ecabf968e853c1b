"""BraTS label conventions: detection, label <-> level <-> region round trips, NumPy and torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.data import brats_labels as bl
from medseg.errors import MedsegInputError

LABELS = {"2018": np.array([[0, 1], [2, 4]]), "2023": np.array([[0, 1], [2, 3]])}
LEVELS = np.array([[0, 2], [1, 3]])


@pytest.mark.parametrize("convention", ["2018", "2023"])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_round_trips(convention: str, kind: str) -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(LABELS[convention].ravel(), size=(5, 6, 7))
    labels = torch.as_tensor(labels) if kind == "torch" else labels
    levels = bl.labels_to_levels(labels, "auto")
    assert type(levels) is type(labels)
    back = bl.levels_to_labels(levels, convention)
    assert np.array_equal(np.asarray(back), np.asarray(labels))
    regions = bl.labels_to_regions(labels, convention)
    assert np.array_equal(np.asarray(bl.regions_to_labels(regions, convention)), np.asarray(labels))
    assert np.array_equal(np.asarray(bl.regions_to_levels(regions)), np.asarray(levels))


@pytest.mark.parametrize("convention", ["2018", "2023"])
def test_known_mapping(convention: str) -> None:
    labels = LABELS[convention]
    assert np.array_equal(bl.labels_to_levels(labels, convention), LEVELS)
    wt, tc, et = bl.labels_to_regions(labels, convention)
    assert wt.tolist() == [[False, True], [True, True]]
    assert tc.tolist() == [[False, True], [False, True]]
    assert et.tolist() == [[False, False], [False, True]]


def test_convention_translation() -> None:
    assert np.array_equal(bl.levels_to_labels(bl.labels_to_levels(LABELS["2018"]), "2023"), LABELS["2023"])


@pytest.mark.parametrize(
    ("values", "convention", "ambiguous"),
    [([0, 1, 2, 4], "2018", False), ([0, 2, 3], "2023", False), ([0, 1, 2], "2018", True), ([0], "2018", True)],
)
def test_detect_convention(values: list[int], convention: str, ambiguous: bool) -> None:
    report = bl.detect_convention(np.array(values))
    assert (report.convention, report.ambiguous) == (convention, ambiguous)
    assert ("assumed" in report.message) == ambiguous


def test_ambiguous_uses_the_default() -> None:
    assert bl.detect_convention(torch.tensor([0, 1, 2]), default="2023").convention == "2023"


@pytest.mark.parametrize("values", [[0, 3, 4], [0, 5], [0, -1]])
def test_detect_rejects_invalid_maps(values: list[int]) -> None:
    with pytest.raises(MedsegInputError):
        bl.detect_convention(np.array(values))


def test_wrong_convention_is_reported() -> None:
    with pytest.raises(MedsegInputError, match="2023"):
        bl.labels_to_levels(np.array([0, 4]), "2023")
    with pytest.raises(ValueError):
        bl.labels_to_levels(np.array([0, 4]), "2019")
    with pytest.raises(ValueError):
        bl.levels_to_labels(np.array([0, 4]))


def test_violating_regions_resolve_innermost_first() -> None:
    # ET outside TC and WT still decodes as enhancing; TC outside WT as necrosis
    regions = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=bool)
    assert bl.regions_to_labels(regions, "2018").tolist() == [4, 1, 2]


def test_regions_on_batch_axis() -> None:
    levels = torch.tensor([[0, 1, 2, 3]])
    regions = bl.levels_to_regions(levels, axis=1)
    assert regions.shape == (1, 3, 4)
    assert torch.equal(bl.regions_to_levels(regions, axis=1), levels)
