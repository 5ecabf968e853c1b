"""NestedLoss and SoftmaxLevelLoss: ~zero when perfect, decrease under training, targets, deep supervision."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medseg.data.brats_labels import levels_to_regions
from medseg.losses.nested import NestedLoss, SoftmaxLevelLoss
from medseg.networks import create_network
from medseg.networks.blocks.multilevel import MultiLevelActivation


def _toy_levels(size: int = 16, batch: int = 2) -> torch.Tensor:
    """Concentric spheres: oedema shell, necrosis, enhancing core (levels 1, 2, 3); (B, 1, s, s, s)."""
    grid = torch.stack(torch.meshgrid(*[torch.arange(size, dtype=torch.float32)] * 3, indexing="ij"))
    levels = []
    for b in range(batch):
        r = (grid - (size / 2 - 1 + b)).square().sum(0).sqrt()
        levels.append((r < 6).long() + (r < 4).long() + (r < 2).long())
    return torch.stack(levels)[:, None]


@pytest.mark.parametrize("mode", ["dice_bce", "mse"])
def test_perfect_prediction_at_high_steepness_is_nearly_zero(mode: str) -> None:
    levels = _toy_levels()
    act = MultiLevelActivation(steepness=60.0, offset_init="fixed")  # the staircase of the given offsets
    loss = NestedLoss(mode=mode)
    perfect = loss(act(levels.float()), levels)
    wrong = loss(act(torch.flip(levels, dims=[2]).float()), levels)
    assert perfect < 1e-4
    assert wrong > 100 * perfect + 1e-3


def _train(forward, parameters, levels: torch.Tensor, loss_fn, steps: int, lr: float) -> list[float]:
    """Losses of ``steps`` Adam steps on ``loss_fn(forward(), levels)``."""
    optimizer = torch.optim.Adam(parameters, lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(forward(), levels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("mode", ["dice_bce", "mse"])
def test_loss_decreases_under_gradient_steps(mode: str) -> None:
    torch.manual_seed(0)
    levels = _toy_levels()
    z = torch.nn.Parameter(torch.zeros(levels.shape))
    act = MultiLevelActivation(learn_offsets=True)
    losses = _train(lambda: act(z), [z, *act.parameters()], levels, NestedLoss(mode=mode), steps=15, lr=0.1)
    assert losses[-1] < 0.5 * losses[0]


def test_tiny_network_improves_in_a_few_steps() -> None:
    torch.manual_seed(0)
    levels = _toy_levels()
    image = torch.cat([levels.float(), torch.randn_like(levels.float())] * 2, dim=1)  # 4 "modalities"
    net = create_network(
        "nested_resunet", in_channels=4, base_filters=4, levels=3, deep_supervision_heads=1, dropout=0.0,
        return_levels=True,
    )
    losses = _train(lambda: net(image), net.parameters(), levels, NestedLoss(), steps=8, lr=3e-3)
    assert losses[-1] < losses[0]


def test_target_forms_are_equivalent() -> None:
    torch.manual_seed(0)
    levels = _toy_levels()
    logits = torch.randn(2, 3, 16, 16, 16)
    loss = NestedLoss()
    as_levels = loss(logits, levels)
    torch.testing.assert_close(loss(logits, levels[:, 0]), as_levels)
    torch.testing.assert_close(loss(logits, levels_to_regions(levels[:, 0], axis=1).float()), as_levels)
    torch.testing.assert_close(loss(logits, levels.float()), as_levels)


def test_deep_supervision_is_the_weighted_sum_over_scales() -> None:
    torch.manual_seed(0)
    levels = _toy_levels()
    full, half = torch.randn(2, 3, 16, 16, 16), torch.randn(2, 3, 8, 8, 8)
    loss = NestedLoss(deep_supervision_weights=(1.0, 0.25))
    masks = levels_to_regions(levels[:, 0], axis=1).float()
    expected = loss(full, masks) + 0.25 * loss(half, F.interpolate(masks, size=(8, 8, 8), mode="nearest-exact"))
    torch.testing.assert_close(loss([full, half], levels), expected)
    torch.testing.assert_close(loss([full], levels), loss(full, levels))


def test_region_weights_select_regions() -> None:
    torch.manual_seed(0)
    levels = _toy_levels()
    logits = torch.randn(2, 3, 16, 16, 16)
    other = logits.clone()
    other[:, 2] = torch.randn(2, 16, 16, 16)
    loss = NestedLoss(region_weights=(1.0, 1.0, 0.0))
    torch.testing.assert_close(loss(logits, levels), loss(other, levels))
    assert not torch.allclose(NestedLoss()(logits, levels), NestedLoss()(other, levels))


def test_softmax_level_loss() -> None:
    levels = _toy_levels()
    perfect = 60.0 * F.one_hot(levels[:, 0], 4).permute(0, 4, 1, 2, 3).float()
    loss = SoftmaxLevelLoss()
    assert loss(perfect, levels) < 1e-4
    assert loss(perfect.flip(1), levels) > 1.0
    coarse = F.interpolate(perfect, size=(8, 8, 8), mode="nearest-exact")  # how the target is downsampled
    assert loss([perfect, coarse], levels.long()) < 1e-3  # long targets work with deep supervision


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_levels": 0},
        {"mode": "l1"},
        {"region_weights": (1.0, 1.0)},
        {"region_weights": (0.0, 0.0, 0.0)},
        {"dice_weight": 0.0, "bce_weight": 0.0},
        {"deep_supervision_weights": (1.0, -1.0)},
    ],
)
def test_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        NestedLoss(**kwargs)


def test_rejects_mismatched_target() -> None:
    with pytest.raises(ValueError, match="target"):
        NestedLoss()(torch.zeros(1, 3, 8, 8, 8), torch.zeros(1, 2, 8, 8, 8))
