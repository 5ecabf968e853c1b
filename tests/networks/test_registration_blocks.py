"""Warping, resizing, integration and composition of displacement fields (voxel units)."""

from __future__ import annotations

import pytest
import torch

from medseg.networks.blocks.registration import (
    DiffeomorphicIntegration,
    Warp,
    compose_flows,
    identity_grid,
    resize_flow,
    warp,
    warp_labels,
)


def _constant(vector: list[float], shape: tuple[int, ...]) -> torch.Tensor:
    return torch.tensor(vector, dtype=torch.float32).view(1, len(vector), *([1] * len(shape))).expand(1, -1, *shape)


@pytest.mark.parametrize("dims", [2, 3])
def test_zero_field_is_the_identity(dims: int) -> None:
    image = torch.rand(2, 3, *([12] * dims))
    moved = warp(image, torch.zeros(2, dims, *([12] * dims)))
    torch.testing.assert_close(moved, image)


@pytest.mark.parametrize("dims", [2, 3])
def test_integer_translation_moves_the_image_by_that_many_voxels(dims: int) -> None:
    shape = (10, 11, 12)[:dims]
    image = torch.rand(1, 1, *shape)
    shift = [2.0, -3.0, 1.0][:dims]
    moved = warp(image, _constant(shift, shape))
    # pull-back: moved[x] = image[x + shift]; compare where x + shift stays inside the grid
    dst = tuple(slice(max(0, -int(s)), n - max(0, int(s))) for s, n in zip(shift, shape, strict=True))
    src = tuple(slice(max(0, int(s)), n + min(0, int(s))) for s, n in zip(shift, shape, strict=True))
    torch.testing.assert_close(moved[(..., *dst)], image[(..., *src)])
    # outside: zero padding (MICDIR's and VoxelMorph's grid_sample default)
    assert moved[(0, 0, slice(shape[0] - 2, None))].abs().max() == 0


def test_labels_are_warped_by_nearest_neighbour_and_keep_their_dtype() -> None:
    labels = torch.randint(0, 5, (1, 1, 9, 9, 9), dtype=torch.uint8)
    moved = warp_labels(labels, _constant([0.4, -0.4, 1.4], (9, 9, 9)))  # rounds to a (0, 0, 1) shift
    assert moved.dtype == torch.uint8
    torch.testing.assert_close(moved[..., :-1], labels[..., 1:])


def test_warp_computes_in_float32_and_refreshes_its_cached_grid() -> None:
    layer = Warp()
    image = torch.rand(1, 1, 8, 8, 8)
    flow = torch.rand(1, 3, 8, 8, 8)
    reference = layer(image, flow)
    half = layer(image.half(), flow.half())  # would reuse a float16 grid in MONAI's cache keyed on shape
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, layer(image.half().float(), flow.half().float()))
    torch.testing.assert_close(layer(image, flow), reference)
    assert layer(torch.rand(1, 1, 6, 6, 6), torch.zeros(1, 3, 6, 6, 6)).shape[2:] == (6, 6, 6)


def test_resize_flow_rescales_vectors_to_the_new_grid() -> None:
    flow = _constant([2.0, 4.0, 0.0], (9, 17, 5))
    small = resize_flow(flow, (5, 9, 3))  # align_corners: (n_new - 1) / (n_old - 1) = 1/2 on every axis
    torch.testing.assert_close(small, _constant([1.0, 2.0, 0.0], (5, 9, 3)))
    # a linear field keeps mapping the same physical points after resizing
    grid = identity_grid((9, 9))[None]
    torch.testing.assert_close(resize_flow(0.1 * grid, (5, 5)), 0.1 * identity_grid((5, 5))[None])


@pytest.mark.parametrize("downsize", [1, 2])
def test_integrating_a_constant_velocity_gives_that_translation(downsize: int) -> None:
    velocity = _constant([1.5, -0.5, 0.75], (16, 16, 16))
    flow = DiffeomorphicIntegration(7, downsize, padding_mode="border")(velocity)
    torch.testing.assert_close(flow, velocity.contiguous(), atol=1e-5, rtol=0)


def test_integration_follows_the_flow_of_a_nonconstant_velocity() -> None:
    # v(x) = a x along axis 0: the exact time-1 displacement is (e^a - 1) x, not the velocity a x
    a = 0.3
    grid = identity_grid((33, 5, 5))[None]
    velocity = torch.zeros_like(grid)
    velocity[:, 0] = a * (grid[:, 0] - 16)
    flow = DiffeomorphicIntegration(7, 1, padding_mode="border")(velocity)
    exact = (torch.exp(torch.tensor(a)) - 1) * (grid[:, 0] - 16)
    inner = (slice(None), slice(12, 21))  # points whose trajectory stays inside the grid
    torch.testing.assert_close(flow[:, 0][inner], exact[inner], atol=2e-3, rtol=0)
    assert (flow[:, 0][inner] - velocity[:, 0][inner]).abs().max() > 0.1


def test_zero_steps_return_the_velocity() -> None:
    velocity = torch.randn(1, 2, 8, 8)
    assert DiffeomorphicIntegration(0)(velocity) is velocity
    with pytest.raises(ValueError):
        DiffeomorphicIntegration(-1)


def test_composition_of_translations_adds_them_and_matches_warping_twice() -> None:
    shape = (12, 12, 12)
    a, b = _constant([1.0, 2.0, -1.0], shape), _constant([0.5, -1.0, 2.0], shape)
    torch.testing.assert_close(compose_flows(a, b), a + b)
    # warping by `outer` then by an integer `inner` equals one warp by their composition
    image = torch.rand(1, 1, *shape)
    outer = 0.5 * torch.sin(identity_grid(shape)[None] / 3)
    inner = _constant([1.0, -1.0, 2.0], shape)
    twice = warp(warp(image, outer, padding_mode="border"), inner, padding_mode="border")
    once = warp(image, compose_flows(outer, inner), padding_mode="border")
    torch.testing.assert_close(twice[..., 1:-1, 1:-1, 2:-2], once[..., 1:-1, 1:-1, 2:-2])
