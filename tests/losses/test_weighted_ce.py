"""H-DenseUNet's weighted cross-entropy (mean over voxels, not over weights) and hybrid loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.losses.weighted_ce import HDenseUNetLoss, WeightedCrossEntropyLoss

WEIGHTS = np.array([0.78, 0.65, 8.57])


def _numpy_weighted_ce(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray = WEIGHTS) -> float:
    """-(1/N) sum_i w[y_i] log softmax(z_i)[y_i], written out voxel by voxel."""
    z = np.moveaxis(logits, 1, -1).reshape(-1, logits.shape[1]).astype(np.float64)
    y = labels.reshape(-1)
    total = 0.0
    for zi, yi in zip(z, y, strict=True):
        log_p = zi[yi] - np.log(np.exp(zi).sum())
        total += -weights[yi] * log_p
    return total / len(y)


def _case(seed: int = 0, shape=(2, 3, 4, 5, 6)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(shape, generator=g, dtype=torch.float64)
    labels = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]), generator=g)
    return logits, labels


def test_weighted_ce_matches_numpy() -> None:
    logits, labels = _case()
    expected = _numpy_weighted_ce(logits.numpy(), labels[:, 0].numpy())
    loss = WeightedCrossEntropyLoss()(logits, labels)
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    assert WeightedCrossEntropyLoss()(logits, labels[:, 0]).item() == pytest.approx(expected, rel=1e-10)
    one_hot = torch.nn.functional.one_hot(labels[:, 0], 3).movedim(-1, 1).double()
    assert WeightedCrossEntropyLoss()(logits, one_hot).item() == pytest.approx(expected, rel=1e-10)


def test_torch_mean_normalises_by_weights_and_ours_does_not() -> None:
    logits, labels = _case(1)
    torch_loss = torch.nn.CrossEntropyLoss(weight=torch.tensor(WEIGHTS))(logits, labels[:, 0])
    ours = WeightedCrossEntropyLoss()(logits, labels)
    weight_sum = WEIGHTS[labels.numpy()].sum()
    assert ours.item() == pytest.approx(torch_loss.item() * weight_sum / labels.numel(), rel=1e-10)
    assert abs(ours.item() - torch_loss.item()) > 1e-3
    normalised = WeightedCrossEntropyLoss(normalise_by_weights=True)(logits, labels)
    assert normalised.item() == pytest.approx(torch_loss.item(), rel=1e-10)


def test_ignore_index_drops_voxels_from_numerator_and_count() -> None:
    logits, labels = _case(2)
    labels[0, 0, 0] = 3  # an extra label, as LiTS-like data may carry
    keep = (labels[:, 0] != 3).numpy()
    z = np.moveaxis(logits.numpy(), 1, -1)[keep]  # (N, C)
    expected = _numpy_weighted_ce(z[:, :, None], labels[:, 0].numpy()[keep])
    loss = WeightedCrossEntropyLoss(ignore_index=3)(logits, labels)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_gradient_is_finite_for_confident_wrong_predictions() -> None:
    logits = torch.tensor([[[200.0], [-200.0], [-200.0]]], requires_grad=True)
    WeightedCrossEntropyLoss()(logits, torch.tensor([[[2]]])).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_hybrid_loss_scores_interior_slices_and_weights_the_2d_term() -> None:
    hff, labels = _case(3)
    two_d, _ = _case(4)
    inner = (slice(None),) * 4 + (slice(1, -1),)
    ce_hff = _numpy_weighted_ce(hff[inner].numpy(), labels[:, 0][inner[1:]].numpy())
    ce_2d = _numpy_weighted_ce(two_d[inner].numpy(), labels[:, 0][inner[1:]].numpy())
    assert HDenseUNetLoss()([hff, two_d], labels).item() == pytest.approx(ce_hff + 0.5 * ce_2d, rel=1e-10)
    assert HDenseUNetLoss(lambda_2d=0.0)([hff, two_d], labels).item() == pytest.approx(ce_hff, rel=1e-10)
    assert HDenseUNetLoss()(hff, labels).item() == pytest.approx(ce_hff, rel=1e-10)
    edited = hff.clone()
    edited[..., 0] += 5.0  # an edge slice: not scored
    assert HDenseUNetLoss()(edited, labels).item() == pytest.approx(ce_hff, rel=1e-10)
    assert HDenseUNetLoss(edge_slices=0)(edited, labels).item() != pytest.approx(ce_hff, rel=1e-6)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError):
        WeightedCrossEntropyLoss(class_weights=(1.0,))
    with pytest.raises(ValueError):
        WeightedCrossEntropyLoss()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError):
        HDenseUNetLoss(edge_slices=2)(torch.zeros(1, 3, 4, 4, 4), torch.zeros(1, 1, 4, 4, 4))
    with pytest.raises(ValueError):
        HDenseUNetLoss()([torch.zeros(1, 3, 4, 4, 4)] * 3, torch.zeros(1, 1, 4, 4, 4))


def test_losses_are_in_the_registry_and_the_hybrid_list_is_not_wrapped() -> None:
    from medseg.losses import create_loss, list_losses

    assert {"weighted_ce", "hdenseunet"} <= set(list_losses())
    assert isinstance(create_loss("weighted_ce", class_weights=[1, 2]), WeightedCrossEntropyLoss)
    hybrid = create_loss("hdenseunet", lambda_2d=0.5, edge_slices=0)
    assert isinstance(hybrid, HDenseUNetLoss)
    target = torch.zeros(1, 1, 4, 4, 4, dtype=torch.long)
    outputs = [torch.randn(1, 3, 4, 4, 4), torch.randn(1, 3, 4, 4, 4)]
    expected = hybrid.ce(outputs[0], target) + 0.5 * hybrid.ce(outputs[1], target)
    torch.testing.assert_close(hybrid(outputs, target), expected)
