"""Nested-class output heads: decoding, conventions, training targets, extras, scoring, head checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.data import MetaTensor
from monai.transforms import Spacing

from medseg.data.brats_labels import labels_to_regions
from medseg.errors import MedsegConfigError
from medseg.model.heads import LabelDiceScorer, check_network, create_head
from medseg.model.heads.nested import RegionDiceScorer
from medseg.metrics.brats import nesting_violations
from medseg.networks import create_network, get_network_spec

LABELS = {"2018": {0: "background", 1: "necrosis", 2: "oedema", 4: "enhancing"}, "2023": {0: "background", 1: "necrosis", 2: "oedema", 3: "enhancing"}}
TINY = get_network_spec("nested_resunet").tiny_kwargs(3)


@pytest.mark.parametrize("convention", ["2018", "2023"])
def test_nested_decoding_counts_regions_and_writes_the_package_convention(convention: str) -> None:
    head = create_head({"kind": "nested"}, LABELS[convention])
    z = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 4)  # plateau centres of levels 0..3
    logits = 5.0 * (z - torch.tensor([0.5, 1.5, 2.5]).view(1, 3, 1))
    probs = head.probabilities(logits)
    assert head.probability_names() == ["WT", "TC", "ET"]
    enhancing = 4 if convention == "2018" else 3
    assert head.to_labels(probs).tolist() == [[0, 2, 1, enhancing]]
    assert head.convention == convention and str(enhancing) in head.describe()


def test_softmax_levels_decode_by_argmax() -> None:
    head = create_head({"kind": "nested_softmax"}, LABELS["2018"])
    logits = torch.eye(4).view(1, 4, 4) * 3  # voxel v has its maximum at level v
    assert head.to_labels(head.probabilities(logits)).tolist() == [[0, 2, 1, 4]]
    assert len(head.probability_names()) == 4


def test_independent_regions_resolve_innermost_first_but_extra_keeps_violations() -> None:
    head = create_head({"kind": "regions"}, LABELS["2018"])
    probs = torch.tensor([[0.1, 0.1, 0.9], [0.9, 0.1, 0.1]]).T.reshape(1, 3, 2)  # voxel 0: ET only (violates)
    assert head.to_labels(probs).tolist() == [[4, 2]]
    masks, kind = head.extra_output("regions", probs[0].permute(1, 0).numpy(), np.array([4, 2]))
    assert kind == "label" and masks.tolist() == [[0, 0, 1], [1, 0, 0]]
    assert nesting_violations(masks, axis=-1).voxels == 1


@pytest.mark.parametrize("kind", ["nested", "nested_softmax"])
@pytest.mark.parametrize("convention", ["2018", "2023"])
def test_training_target_maps_stored_labels_to_levels(kind: str, convention: str) -> None:
    head = create_head({"kind": kind}, LABELS["2018"])  # stored data may follow either convention
    enhancing = 4 if convention == "2018" else 3
    label = torch.tensor([0.0, 1.0, 2.0, float(enhancing)]).view(1, 1, 4)
    target = head.training_target(label)
    assert target.dtype == label.dtype and target.flatten().tolist() == [0, 2, 1, 3]


def test_regions_extra_output_from_labels() -> None:
    head = create_head({"kind": "nested"}, LABELS["2018"])
    assert "regions" in head.extra_outputs()
    labels = np.array([[0, 2], [1, 4]], dtype=np.uint8)[..., None]
    masks, kind = head.extra_output("regions", np.zeros((2, 2, 1, 3), np.float32), labels)
    assert kind == "label" and masks.shape == (2, 2, 1, 3) and masks.dtype == np.uint8
    np.testing.assert_array_equal(np.moveaxis(masks, -1, 0), labels_to_regions(labels))
    with pytest.raises(MedsegConfigError, match="regions"):
        head.extra_output("nope", np.zeros((1, 1, 1, 3)), np.zeros((1, 1, 1)))
    assert create_head({"kind": "labels"}, LABELS["2018"]).extra_outputs() == {}


@pytest.mark.parametrize("options", [{"kind": "nested", "threshold": 1.5}, {"kind": "nested_softmax"}])
def test_bad_options_or_label_sets_are_config_errors(options: dict) -> None:
    labels = LABELS["2018"] if "threshold" in options else {0: "background", 1: "tumour"}
    with pytest.raises(MedsegConfigError):
        create_head(options, labels)


@settings(max_examples=40, deadline=None)
@given(
    z=st.lists(st.floats(-4, 7, allow_nan=False), min_size=27, max_size=27),
    steepness=st.floats(0.5, 30),
    spacing=st.tuples(*[st.sampled_from([0.4, 0.7, 1.3, 2.2])] * 3),
    threshold=st.floats(0.05, 0.95),
)
def test_linear_resampling_keeps_region_probabilities_ordered(z, steepness, spacing, threshold) -> None:
    """The predictor resamples probabilities with MONAI's bilinear Spacing: they stay ordered, masks nest."""
    head = create_head({"kind": "nested", "threshold": threshold}, LABELS["2018"])
    field = torch.tensor(z).view(1, 1, 3, 3, 3)
    logits = steepness * (field - torch.tensor([0.5, 1.5, 2.5]).view(1, 3, 1, 1, 1))
    resample = Spacing(pixdim=spacing, mode="bilinear", padding_mode="border")
    probs = resample(MetaTensor(head.probabilities(logits)[0], affine=torch.eye(4))).as_tensor()[None]
    assert (probs[:, :-1] >= probs[:, 1:]).all()
    labels = head.to_labels(probs)[0].numpy()
    masks = (probs[0] > threshold).numpy()
    np.testing.assert_array_equal(labels_to_regions(labels), masks)  # labels decode exactly the thresholded masks
    assert nesting_violations(masks).voxels == 0


def test_region_dice_scorer_known_answer() -> None:
    ref = torch.tensor([0, 2, 2, 1, 4, 4])
    pred = torch.tensor([0, 2, 1, 1, 4, 0])  # WT 4/5 vs 5: 8/9; TC {2,3,4} vs {3,4,5}: 2/3; ET {4} vs {4,5}: 2/3
    scorer = RegionDiceScorer()
    scorer.update(pred, ref)
    scorer.update(ref, ref)
    out = scorer.result()
    assert out["val_dice_WT"] == pytest.approx((8 / 9 + 1) / 2)
    assert out["val_dice_ET"] == pytest.approx((2 / 3 + 1) / 2)
    assert out["val_score"] == pytest.approx(np.mean([(8 / 9 + 1) / 2, (2 / 3 + 1) / 2, (2 / 3 + 1) / 2]))


def test_region_dice_scorer_reads_each_map_by_its_convention_and_scores_empty_et_as_one() -> None:
    scorer = RegionDiceScorer()
    scorer.update(torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 4]))  # 2023-convention prediction, 2018 reference
    scorer.update(torch.tensor([0, 2, 2, 1]), torch.tensor([0, 2, 2, 1]))  # no enhancing tumour anywhere
    assert scorer.result()["val_score"] == 1.0


def test_label_dice_scorer_is_the_default() -> None:
    head = create_head({"kind": "labels"}, {0: "background", 1: "organ", 2: "lesion"})
    scorer = head.validation_scorer()
    assert isinstance(scorer, LabelDiceScorer)
    scorer.update(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]))
    assert scorer.result() == pytest.approx({"val_dice_organ": 2 / 3, "val_dice_lesion": 2 / 3, "val_score": 2 / 3})


@pytest.mark.parametrize(
    ("network_kwargs", "kind", "ok"),
    [
        ({}, "nested", True),
        ({}, "labels", False),
        ({}, "nested_softmax", False),
        ({"out_channels": 4}, "nested_softmax", True),
        ({"out_channels": 4}, "labels", True),
        ({"out_channels": 4}, "nested", False),
        ({"out_channels": 3, "head": "sigmoid"}, "regions", True),
        ({"out_channels": 3, "head": "sigmoid"}, "nested", False),
    ],
)
def test_check_network_matches_head_and_output_kind(network_kwargs: dict, kind: str, ok: bool) -> None:
    net = create_network("nested_resunet", **{**TINY, **network_kwargs})
    labels = LABELS["2018"] if kind != "labels" else {0: "a", 1: "b", 2: "c", 3: "d"}
    head = create_head({"kind": kind}, labels)
    if ok:
        check_network(head, net)
    else:
        with pytest.raises(MedsegConfigError, match="output.kind"):
            check_network(head, net)


def test_check_network_ignores_kinds_without_an_adapter() -> None:
    head = create_head({"kind": "labels"}, {0: "background", 1: "x"})
    check_network(head, create_network("unet", **get_network_spec("unet").tiny_kwargs(3)))
    check_network(head, create_network("voxelmorph", **get_network_spec("voxelmorph").tiny_kwargs(3)))  # displacement
    check_network(head, torch.nn.Identity())
