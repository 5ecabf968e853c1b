"""Registration losses: global NCC, gradient smoothness, inverse consistency, MICDIR's weighted sum."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.losses import DiffusionLoss

from medseg.losses.registration import (
    GlobalNCCLoss,
    GradientSmoothnessLoss,
    InverseConsistencyLoss,
    MicdirLoss,
    RegistrationLoss,
    VoxelMorphLoss,
    make_similarity,
)
from medseg.networks import create_network, get_network_spec
from medseg.networks.blocks.registration import identity_grid


def test_global_ncc_is_minus_pearson_per_volume() -> None:
    torch.manual_seed(0)
    x, y = torch.rand(3, 1, 6, 7, 8), torch.rand(3, 1, 6, 7, 8)
    y = y + 0.5 * x
    expected = np.mean([np.corrcoef(x[b].ravel(), y[b].ravel())[0, 1] for b in range(3)])
    assert GlobalNCCLoss()(y, x).item() == pytest.approx(-expected, abs=1e-5)
    assert GlobalNCCLoss()(3 * x + 2, x).item() == pytest.approx(-1.0, abs=1e-5)  # invariant to gain and offset
    assert GlobalNCCLoss()(1 - x, x).item() == pytest.approx(1.0, abs=1e-5)


def test_gradient_smoothness_sees_a_checkerboard_that_central_differences_miss() -> None:
    grid = identity_grid((8, 8, 8))
    checker = ((grid.sum(0) % 2) * 2 - 1).expand(1, 3, 8, 8, 8).contiguous()  # +-1 alternating
    assert GradientSmoothnessLoss()(checker).item() == pytest.approx(4.0)  # every difference is +-2
    assert GradientSmoothnessLoss("l1")(checker).item() == pytest.approx(2.0)
    assert DiffusionLoss()(checker).item() == pytest.approx(0.0)  # why we keep the forward differences
    assert GradientSmoothnessLoss()(torch.full((1, 3, 8, 8, 8), 2.5)).item() == 0.0
    ramp = (0.5 * grid[0]).expand(1, 3, 8, 8, 8)  # slope 0.5 along the first axis only
    assert GradientSmoothnessLoss()(ramp).item() == pytest.approx(0.25 / 3)


def test_inverse_consistency_is_zero_for_exact_inverses_only() -> None:
    shape = (10, 10, 10)
    t = torch.tensor([1.5, -2.0, 0.25]).view(1, 3, 1, 1, 1).expand(2, 3, *shape)
    loss = InverseConsistencyLoss()
    assert loss(t, -t).item() == pytest.approx(0.0, abs=1e-10)
    assert loss(t, t).item() == pytest.approx(float((2 * t[0, :, 0, 0, 0]).square().sum()), rel=1e-5)
    # an expansion about the centre and its inverse contraction: zero where both stay inside the grid
    grid = identity_grid(shape)[None] - 4.5
    expand, contract = 0.1 * grid, (1 / 1.1 - 1) * grid
    naive = -expand  # negating a field does not invert it
    assert loss(expand, contract).item() < 0.5 * loss(expand, naive).item()  # what is left: the grid faces
    from medseg.metrics.registration import inverse_consistency_map

    inside = inverse_consistency_map(expand, contract)[:, 1:-1, 1:-1, 1:-1]  # where 1.1 x stays in the grid
    assert inside.max().item() < 1e-5


def _micdir_outputs(dims: int = 2) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    spec = get_network_spec("micdir")
    kwargs = spec.tiny_kwargs(dims)
    net = create_network("micdir", **kwargs)
    fixed, moving = spec.make_example_inputs(dims, kwargs)
    return net(fixed, moving), fixed, moving


def test_micdir_loss_is_the_code_s_weighted_sum_over_both_directions() -> None:
    torch.manual_seed(0)
    out, fixed, moving = _micdir_outputs()
    loss = MicdirLoss(spatial_dims=2)
    terms = loss.terms(out, fixed, moving)
    assert set(terms) == {"similarity", "smoothness", "graph", "similarity_half", "smoothness_half"}
    ncc = GlobalNCCLoss()
    expected_similarity = ncc(out["moved"], fixed) + ncc(out["moved_reverse"], moving)
    torch.testing.assert_close(terms["similarity"], expected_similarity)
    torch.testing.assert_close(terms["graph"], out["graph_loss"] + out["graph_loss_reverse"])
    weights = {"similarity": 1.2, "smoothness": 1.0, "graph": 1.0, "similarity_half": 0.5, "smoothness_half": 0.5}
    torch.testing.assert_close(loss(out, fixed, moving), sum(weights[k] * v for k, v in terms.items()))
    loss(out, fixed, moving).backward()  # differentiable end to end
    with pytest.raises(ValueError, match="moving"):
        loss(out, fixed)


def test_inverse_consistency_term_is_optional() -> None:
    torch.manual_seed(0)
    out, fixed, moving = _micdir_outputs()
    terms = MicdirLoss(spatial_dims=2, inverse_consistency_weight=0.1, graph_weight=0.0).terms(out, fixed, moving)
    assert "inverse_consistency" in terms and "graph" not in terms
    assert terms["inverse_consistency"].item() >= 0


def test_perfect_alignment_reaches_minus_one_similarity_per_direction() -> None:
    image = torch.rand(1, 1, 16, 16)
    zero = torch.zeros(1, 2, 16, 16)
    out = {"moved": image, "flow": zero, "moved_reverse": image, "flow_reverse": zero}
    terms = RegistrationLoss(spatial_dims=2).terms(out, image, image)
    assert terms["similarity"].item() == pytest.approx(-2.0, abs=1e-5)
    assert terms["smoothness"].item() == 0.0


def test_voxelmorph_loss_uses_local_ncc_and_the_velocity() -> None:
    spec = get_network_spec("voxelmorph")
    kwargs = {**spec.tiny_kwargs(3), "bidirectional": False}
    net = create_network("voxelmorph", **kwargs)
    fixed, moving = spec.make_example_inputs(3, kwargs)
    out = net(fixed, moving)
    loss = VoxelMorphLoss(spatial_dims=3)
    terms = loss.terms(out, fixed)
    assert set(terms) == {"similarity", "smoothness"}
    torch.testing.assert_close(terms["smoothness"], GradientSmoothnessLoss()(out["velocity"]))
    lncc = make_similarity("lncc", 3, lncc_kernel_size=9)
    torch.testing.assert_close(terms["similarity"], lncc(out["moved"], fixed))


@pytest.mark.parametrize("name", ["ncc", "lncc", "mse", "mi"])
def test_similarities_prefer_the_aligned_image(name: str) -> None:
    torch.manual_seed(0)
    smooth = torch.nn.functional.avg_pool3d(torch.rand(1, 1, 20, 20, 20), 5, stride=1, padding=2)
    similarity = make_similarity(name, 3, lncc_kernel_size=5)
    shifted = torch.roll(smooth, 3, dims=2)
    assert similarity(smooth, smooth).item() < similarity(shifted, smooth).item()


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        RegistrationLoss(similarity="ssim")
    with pytest.raises(ValueError):
        RegistrationLoss(smoothness="tv")
    with pytest.raises(ValueError):
        RegistrationLoss(similarity_weight=-1.2)
    with pytest.raises(ValueError):
        RegistrationLoss(regularize="both")
