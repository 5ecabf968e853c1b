"""Dilated inception block: branch factorisation, dilation reach, residual wiring, argument checks."""

from __future__ import annotations

import pytest
import torch

from medseg.networks.blocks.dilated_inception import DilatedInceptionBlock, asymmetric_branch


def test_3d_branch_factorises_along_each_axis() -> None:
    branch = asymmetric_branch(3, 2, kernel=5, dilation=2)
    assert [tuple(c.conv.kernel_size) for c in branch] == [(5, 1, 1), (1, 5, 1), (1, 1, 5)]
    assert [tuple(c.conv.dilation) for c in branch] == [(2, 1, 1), (1, 2, 1), (1, 1, 2)]


@pytest.mark.parametrize("dims", [2, 3])
def test_dilated_branch_reaches_exactly_kernel_times_dilation(dims: int) -> None:
    branch = asymmetric_branch(dims, 1, kernel=3, dilation=4).eval()  # eval BatchNorm: identity at init
    for conv in branch:  # positive weights on a positive input keep every ReLU open
        torch.nn.init.ones_(conv.conv.weight)
        torch.nn.init.zeros_(conv.conv.bias)
    size = 17
    x = torch.rand(1, 1, *([size] * dims), requires_grad=True)
    branch(x)[(0, 0, *([size // 2] * dims))].backward()
    reached = (x.grad[0, 0] != 0).nonzero() - size // 2
    # the receptive field is the separable product of {-4, 0, 4} along every axis
    assert set(reached.abs().flatten().tolist()) <= {0, 4}
    assert reached.abs().max().item() == 4
    assert len(reached) == 3**dims


@pytest.mark.parametrize(("dims", "asymmetric"), [(2, True), (2, False), (3, True)])
def test_block_keeps_spatial_size(dims: int, asymmetric: bool) -> None:
    block = DilatedInceptionBlock(dims, 3, 6, asymmetric=asymmetric)
    assert block(torch.randn(2, 3, *([12] * dims))).shape == (2, 6, *([12] * dims))


def test_square_branches_have_more_parameters_than_asymmetric() -> None:
    def params(asymmetric: bool) -> int:
        return sum(p.numel() for p in DilatedInceptionBlock(2, 8, 8, asymmetric=asymmetric).parameters())

    assert params(True) < params(False)


@pytest.mark.parametrize(
    "kwargs",
    [{"spatial_dims": 4}, {"in_channels": 0}, {"branches": ((2, 1),)}, {"branches": ()}],
)
def test_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"spatial_dims": 2, "in_channels": 1, "out_channels": 4, **kwargs}
    with pytest.raises(ValueError):
        DilatedInceptionBlock(**args)  # type: ignore[arg-type]
