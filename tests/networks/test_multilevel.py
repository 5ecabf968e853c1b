"""MultiLevelActivation: monotone in z, nested masks for any input, ordered (learnt) offsets."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from medseg.networks.blocks.multilevel import MultiLevelActivation

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, width=32)
offsets_st = st.tuples(finite, st.lists(st.floats(1e-2, 50.0), min_size=0, max_size=4)).map(
    lambda t: [t[0] + sum(t[1][:i]) for i in range(len(t[1]) + 1)]
)
steepness_st = st.floats(min_value=1e-2, max_value=1e2)


def _activation(offsets: list[float], steepness: float, learn: bool) -> MultiLevelActivation:
    if any(b2 <= b1 for b1, b2 in zip(offsets, offsets[1:])):  # float rounding may merge close offsets
        offsets = [offsets[0] + i for i in range(len(offsets))]
    return MultiLevelActivation(offsets, steepness, learn_offsets=learn)


@settings(max_examples=150, deadline=None)
@given(
    z=st.lists(finite, min_size=1, max_size=64),
    offsets=offsets_st,
    steepness=steepness_st,
    learn=st.booleans(),
    threshold=st.floats(min_value=1e-3, max_value=1 - 1e-3),
)
def test_thresholds_give_nested_masks_for_any_input(z, offsets, steepness, learn, threshold) -> None:
    act = _activation(offsets, steepness, learn)
    logits = act(torch.tensor(z).view(1, 1, -1))
    probs = act.probabilities(logits)
    masks = probs > threshold
    assert (masks[:, :-1] | ~masks[:, 1:]).all(), "an inner region left its parent"
    assert (logits[:, :-1] >= logits[:, 1:]).all()
    levels = act.levels(logits)
    clear = (logits.abs() > 1e-6).all(dim=1, keepdim=True)  # sigmoid rounds to exactly 0.5 closer than this
    assert torch.equal(levels[clear], (probs > 0.5).sum(dim=1, keepdim=True)[clear])
    # a level k voxel is inside exactly the first k regions
    expected = torch.arange(1, act.num_levels + 1).view(1, -1, 1) <= levels
    assert torch.equal(logits > 0, expected)


@settings(max_examples=100, deadline=None)
@given(z=st.lists(finite, min_size=2, max_size=64), offsets=offsets_st, steepness=steepness_st, learn=st.booleans())
def test_monotone_in_z(z, offsets, steepness, learn) -> None:
    act = _activation(offsets, steepness, learn)
    z_sorted = torch.tensor(sorted(z)).view(1, 1, -1)
    logits = act(z_sorted)
    for values in (logits, act.probabilities(logits), act.multilevel_output(logits), act.levels(logits)):
        assert (values[..., 1:] >= values[..., :-1]).all()


@settings(max_examples=100, deadline=None)
@given(raw=st.lists(st.floats(-30.0, 30.0), min_size=1, max_size=5))
def test_learnt_offsets_stay_ordered_for_any_parameters(raw) -> None:
    act = MultiLevelActivation([float(i) for i in range(len(raw))], learn_offsets=True)
    with torch.no_grad():
        act.raw_offsets.copy_(torch.tensor(raw))
    offsets = act.offsets
    assert (offsets[1:] >= offsets[:-1]).all()


@pytest.mark.parametrize("learn", [False, True])
def test_initial_offsets_and_staircase(learn: bool) -> None:
    act = MultiLevelActivation((0.5, 1.5, 2.5), steepness=40.0, learn_offsets=learn, offset_init="fixed")
    torch.testing.assert_close(act.offsets, torch.tensor([0.5, 1.5, 2.5]))
    logits = act(torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 4))
    torch.testing.assert_close(act.multilevel_output(logits).flatten(), torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]))
    assert act.levels(logits).flatten().tolist() == [0, 1, 2, 3]


def test_learnt_offsets_receive_gradients_and_fixed_ones_are_saved() -> None:
    learnt = MultiLevelActivation(learn_offsets=True)
    learnt(torch.randn(2, 1, 5)).sigmoid().sum().backward()
    assert learnt.raw_offsets.grad is not None and learnt.raw_offsets.grad.abs().sum() > 0
    assert "fixed_offsets" in MultiLevelActivation().state_dict()


@pytest.mark.parametrize(
    "kwargs", [{"offsets": ()}, {"offsets": (0.0, 0.0)}, {"offsets": (0.0, float("inf"))}, {"steepness": -1.0}]
)
def test_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        MultiLevelActivation(**kwargs)


@pytest.mark.parametrize("learn", [False, True])
def test_centred_init_moves_the_offsets_onto_the_first_training_batch(learn: bool) -> None:
    z = 3.0 + torch.randn(2, 1, 999, generator=torch.Generator().manual_seed(0))  # a network whose z starts near 3
    act = MultiLevelActivation((0.5, 1.5, 2.5), steepness=5.0, learn_offsets=learn)  # default: centred
    assert not bool(act.calibrated)
    act(z)
    offsets = act.offsets.detach()
    torch.testing.assert_close(offsets[1], z.median(), atol=1e-5, rtol=0)  # midpoint on the median
    torch.testing.assert_close(offsets[1:] - offsets[:-1], torch.ones(2), atol=1e-5, rtol=0)  # spacing kept
    levels = act.levels(act(z))
    assert set(levels.unique().tolist()) == {0, 1, 2, 3}  # every level holds voxels from the start
    act(z + 10)  # later batches leave the offsets alone
    torch.testing.assert_close(act.offsets.detach(), offsets)


def test_fixed_init_keeps_the_offsets_and_leaves_the_innermost_level_out_of_reach() -> None:
    z = torch.randn(2, 1, 999, generator=torch.Generator().manual_seed(0))  # z near 0, spread 1
    fixed = MultiLevelActivation((0.5, 1.5, 2.5), 5.0, offset_init="fixed")
    logits = fixed(z)
    torch.testing.assert_close(fixed.offsets, torch.tensor([0.5, 1.5, 2.5]))
    assert (fixed.levels(logits) == 3).float().mean() < 0.02  # ET (z > 2.5) almost nowhere at the start
    centred = MultiLevelActivation((0.5, 1.5, 2.5), 5.0)
    assert (centred.levels(centred(z)) == 3).float().mean() > 0.1


def test_centred_init_waits_for_training_and_is_kept_in_checkpoints() -> None:
    act = MultiLevelActivation()
    act.eval()(torch.full((1, 1, 8), 4.0))  # evaluation never calibrates
    assert not bool(act.calibrated)
    act.train()(torch.full((1, 1, 8), 4.0))
    restored = MultiLevelActivation()
    restored.load_state_dict(act.state_dict())
    assert bool(restored.calibrated)
    torch.testing.assert_close(restored.offsets, torch.tensor([3.0, 4.0, 5.0]))
    restored(torch.zeros(1, 1, 8))  # a resumed run does not shift again
    torch.testing.assert_close(restored.offsets, torch.tensor([3.0, 4.0, 5.0]))
    legacy = {k: v for k, v in act.state_dict().items() if k != "calibrated"}  # saved before offset_init existed
    old = MultiLevelActivation()
    old.load_state_dict(legacy)
    assert bool(old.calibrated)


def test_network_passes_the_offset_choices_to_its_head() -> None:
    from medseg.networks.nested_resunet import NestedResUNet

    net = NestedResUNet(3, 4, 1, base_filters=2, levels=3, deep_supervision_heads=1, offsets=(0.0, 2.0, 4.0), steepness=3.0,
                        learn_offsets=True, offset_init="fixed")
    act = net.activation
    assert act is not None and act.steepness == 3.0 and act.learn_offsets and act.offset_init == "fixed"
    torch.testing.assert_close(act.offsets.detach(), torch.tensor([0.0, 2.0, 4.0]))
    with pytest.raises(ValueError, match="offset_init"):
        MultiLevelActivation(offset_init="median")


def test_rejects_more_than_one_channel() -> None:
    with pytest.raises(ValueError, match=r"\(B, 1"):
        MultiLevelActivation()(torch.zeros(1, 2, 4))
