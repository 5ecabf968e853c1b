"""NestedResUNet: the other heads through the registry sweep, deep-supervision outputs, validation."""

from __future__ import annotations

import dataclasses

import pytest
import test_registry_sweep as sweep  # the shared sweep test (tests/networks is on sys.path under pytest)
import torch

from medseg.networks import create_network, get_network_spec, registry

TINY = get_network_spec("nested_resunet").tiny_kwargs


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(
    "head_kwargs",
    [{"out_channels": 4}, {"out_channels": 3, "head": "sigmoid"}, {"learn_offsets": True}],
    ids=["softmax", "sigmoid", "learnt-offsets"],
)
def test_sweep_with_other_heads(dims: int, head_kwargs: dict, tmp_path, monkeypatch) -> None:
    spec = get_network_spec("nested_resunet")
    variant = dataclasses.replace(spec, tiny_kwargs=lambda d: {**TINY(d), **head_kwargs})
    monkeypatch.setitem(registry.NETWORKS._entries, "nested_resunet", dataclasses.replace(registry.NETWORKS.entry("nested_resunet"), value=variant))
    sweep.test_network_sweep("nested_resunet", dims, tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "channels", "kind"),
    [({}, 3, "nested"), ({"out_channels": 4}, 4, "labels"), ({"out_channels": 3, "head": "sigmoid"}, 3, "regions")],
)
def test_heads_shapes_and_output_kind(kwargs: dict, channels: int, kind: str) -> None:
    net = create_network("nested_resunet", **{**TINY(3), **kwargs}).eval()
    assert net.output_kind == kind
    assert net(torch.randn(1, 4, 16, 16, 16)).shape == (1, channels, 16, 16, 16)


def test_multilevel_output_is_nested_everywhere() -> None:
    torch.manual_seed(1)
    net = create_network("nested_resunet", **TINY(3)).eval()
    logits = net(3 * torch.randn(2, 4, 16, 16, 16))
    assert (logits[:, :-1] >= logits[:, 1:]).all()


def test_return_levels_gives_partial_sums_in_training_only() -> None:
    torch.manual_seed(0)
    kwargs = {**TINY(3), "levels": 4, "deep_supervision_heads": 2, "return_levels": True, "dropout": 0.0}
    net = create_network("nested_resunet", **kwargs).train()
    x = torch.randn(1, 4, 16, 16, 16)
    outputs = net(x)
    assert [tuple(o.shape[2:]) for o in outputs] == [(16,) * 3, (8,) * 3, (4,) * 3]
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), net.forward_levels(x)[0])
        # the full output is the 1/2 partial sum upsampled (nearest) plus the full-resolution head
        z_half = net.forward_levels(x)[1] / net.activation.steepness + net.activation.offsets.view(1, -1, 1, 1, 1)
        z_full = net(x) / net.activation.steepness + net.activation.offsets.view(1, -1, 1, 1, 1)
        residual = z_full - torch.repeat_interleave(
            torch.repeat_interleave(torch.repeat_interleave(z_half, 2, 2), 2, 3), 2, 4
        )
        # the residual is the full-resolution head, identical across the K channels (one z channel)
        torch.testing.assert_close(residual[:, :1].expand_as(residual), residual)
        assert residual.abs().max() > 0


def test_paper_defaults() -> None:
    net = create_network("nested_resunet")
    assert net.filters == [16, 32, 64, 128, 256]
    assert len(net.seg_heads) == 3  # full resolution + two deep-supervision heads
    assert net.context[0].body[2].p == pytest.approx(0.3)
    assert net.context[0].body[0][1].negative_slope == pytest.approx(0.01)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"spatial_dims": 1},
        {"levels": 1},
        {"filters": (8, 16)},
        {"dropout": 1.0},
        {"deep_supervision_heads": 4},
        {"upsample_mode": "cubic"},
        {"head": "multilevel", "out_channels": 4},
        {"head": "softmax", "out_channels": 1},
        {"head": "other"},
        {"offsets": (1.0, 0.5, 2.0)},
        {"steepness": 0.0},
    ],
)
def test_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        create_network("nested_resunet", **kwargs)


def test_rejects_indivisible_input() -> None:
    net = create_network("nested_resunet", **TINY(3))
    with pytest.raises(ValueError, match="divisible"):
        net(torch.zeros(1, 4, 18, 16, 16))
