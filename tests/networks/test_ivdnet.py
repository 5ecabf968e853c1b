"""IVD-Net: hyper-dense wiring, paper channel counts, carry modes, input checks, early-fusion baseline."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medseg.networks import create_network, get_network_spec, list_networks
from medseg.networks.early_fusion_unet import count_parameters, ivdnet_parameter_count, matched_unet_filters
from medseg.networks.ivdnet import IVDNet, ivdnet_channels
from medseg.networks.unet import UNet


def _tiny(dims: int = 2, **kwargs: object) -> IVDNet:
    torch.manual_seed(0)
    return IVDNet(dims, base_width=4, **kwargs).eval()


def _capture_block_inputs(net: IVDNet) -> dict[tuple[int, int], torch.Tensor]:
    """Record the input of every encoder block, keyed by (path, level)."""
    seen: dict[tuple[int, int], torch.Tensor] = {}
    for m, path in enumerate(net.paths):
        for level, block in enumerate(path):
            block.register_forward_pre_hook(lambda _mod, args, key=(m, level): seen.__setitem__(key, args[0]))
    return seen


def test_registered_in_2d_and_3d() -> None:
    for name in ("ivdnet", "early_fusion_unet"):
        assert name in list_networks()
        assert get_network_spec(name).spatial_dims == (2, 3)
    spec = get_network_spec("ivdnet")
    assert spec.make_example_inputs(2, spec.tiny_kwargs(2))[0].shape == (2, 4, 32, 32)


@pytest.mark.parametrize("modality", range(4))
def test_dense_connections_feed_every_path_after_the_first_block(modality: int) -> None:
    net = _tiny()
    x = torch.randn(2, 4, 16, 16)
    changed = x.clone()
    changed[:, modality] = 0
    with torch.no_grad():
        before, bridge_before = net.encode(x)
        after, bridge_after = net.encode(changed)
    for m in range(4):  # first block: a modality reaches its own path only
        same = torch.equal(before[0][m], after[0][m])
        assert same == (m != modality), f"level 0, path {m}"
    for level in range(1, 4):  # later blocks: every path sees every modality
        for m in range(4):
            assert not torch.allclose(before[level][m], after[level][m]), f"level {level}, path {m}"
    assert not torch.allclose(bridge_before, bridge_after)


def test_next_level_input_is_rotated_so_own_path_comes_first() -> None:
    net = _tiny()
    seen = _capture_block_inputs(net)
    with torch.no_grad():
        features, _ = net.encode(torch.randn(1, 4, 16, 16))
    width = features[0][0].shape[1]
    for m in range(4):
        block_input = seen[(m, 1)]
        assert block_input.shape[1] == 4 * width  # level 1 carries nothing else
        for k in range(4):
            expected = F.max_pool2d(features[0][(m + k) % 4], 2)
            torch.testing.assert_close(block_input[:, k * width : (k + 1) * width], expected)


@pytest.mark.parametrize("carry_mode", ["pool", "crop"])
def test_carried_input_is_pooled_or_centre_cropped(carry_mode: str) -> None:
    net = _tiny(carry_mode=carry_mode)
    seen = _capture_block_inputs(net)
    with torch.no_grad():
        features, _ = net.encode(torch.randn(1, 4, 32, 32))
    for m in range(4):
        previous, current = seen[(m, 1)], seen[(m, 2)]  # 16x16 and 8x8 maps
        carried = current[:, 4 * features[1][0].shape[1] :]
        expected = F.max_pool2d(previous, 2) if carry_mode == "pool" else previous[:, :, 4:12, 4:12]
        torch.testing.assert_close(carried, expected)


@pytest.mark.parametrize("dims", [2, 3])
def test_carry_modes_run_and_differ(dims: int) -> None:
    pool, crop = _tiny(dims), _tiny(dims, carry_mode="crop")
    crop.load_state_dict(pool.state_dict())
    x = torch.randn(1, 4, *([16] * dims))
    with torch.no_grad():
        a, b = pool(x), crop(x)
    assert a.shape == b.shape == (1, 2, *([16] * dims))
    assert torch.isfinite(b).all()
    assert not torch.allclose(a, b)


def test_paper_channel_counts_from_module_shapes() -> None:
    with torch.device("meta"):
        net = IVDNet()  # spatial_dims=2, 4 modalities, 2 classes, base 32
    for path in net.paths:
        in_ch = [block.conv_in.conv.weight.shape[1] for block in path]
        out_ch = [block.conv_out.conv.weight.shape[0] for block in path]
        assert in_ch == [1, 128, 384, 896]
        assert out_ch == [32, 64, 128, 256]
    assert tuple(net.bridge.conv_in.conv.weight.shape[:2]) == (512, 1920)
    assert [up.conv.weight.shape[1] for up in net.up_convs] == [256, 128, 64, 32]  # ConvTranspose: (in, out, ...)
    assert [block.conv_out.conv.weight.shape[0] for block in net.up_blocks] == [256, 128, 64, 32]
    assert net.head.conv.weight.shape[0] == 2
    branch_kernels = [tuple(conv.conv.kernel_size) for conv in net.paths[0][0].branches[2]]
    assert branch_kernels == [(5, 1), (1, 5)]
    assert [tuple(b[0].conv.dilation) for b in net.paths[0][0].branches] == [(1, 1), (1, 1), (1, 1), (2, 1), (4, 1)]
    # same count as the authors' IVD_Net_asym(1, 2, 32) (checked against josedolz/IVD-Net)
    assert sum(p.numel() for p in net.parameters()) == 54_313_954
    expected = {"encoder_in": (1, 128, 384, 896), "encoder_out": (32, 64, 128, 256), "bridge": (1920, 512)}
    assert ivdnet_channels() == expected


def test_paper_width_forward_shapes() -> None:
    torch.manual_seed(0)
    net = IVDNet().eval()
    x = torch.randn(1, 4, 64, 64)
    with torch.no_grad():
        features, bridge = net.encode(x)
        out = net(x)
    assert [tuple(f[0].shape[1:]) for f in features] == [(32, 64, 64), (64, 32, 32), (128, 16, 16), (256, 8, 8)]
    assert tuple(bridge.shape[1:]) == (512, 4, 4)
    assert out.shape == (1, 2, 64, 64)


def test_other_modality_counts() -> None:
    net = IVDNet(2, n_modalities=2, base_width=4).eval()
    assert [block.conv_in.conv.weight.shape[1] for block in net.paths[1]] == [1, 8, 24, 56]
    assert net(torch.randn(1, 2, 16, 16)).shape == (1, 2, 16, 16)


def test_wrong_inputs_give_clear_errors() -> None:
    net = _tiny()
    with pytest.raises(ValueError, match="expects 4 modalities"):
        net(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="divisible by 2\\*\\*depth = 16"):
        net(torch.randn(1, 4, 24, 32))
    with pytest.raises(ValueError, match="2D"):
        net(torch.randn(1, 4, 16, 16, 16))


@pytest.mark.parametrize(
    "kwargs",
    [{"spatial_dims": 1}, {"n_modalities": 0}, {"base_width": 0}, {"depth": 0}, {"carry_mode": "cut"}],
)
def test_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        IVDNet(**kwargs)


def test_xavier_normal_and_batchnorm_init() -> None:
    torch.manual_seed(0)
    net = IVDNet(2, base_width=8)
    weight = net.bridge.conv_in.conv.weight  # (128, 480, 3, 3)
    fan_in, fan_out = weight.shape[1] * 9, weight.shape[0] * 9
    assert weight.std().item() == pytest.approx((2 / (fan_in + fan_out)) ** 0.5, rel=0.05)
    bn = net.bridge.conv_in.adn.N
    assert bn.weight.mean().item() == pytest.approx(1.0, abs=0.01)
    assert 0.01 < bn.weight.std().item() < 0.03
    assert torch.equal(bn.bias, torch.zeros_like(bn.bias))


@pytest.mark.parametrize(("dims", "base_width"), [(2, 4), (3, 4), (2, 32)])
def test_early_fusion_matches_ivdnet_parameter_count(dims: int, base_width: int) -> None:
    target = ivdnet_parameter_count(dims, 4, 2, base_width, 4)
    filters = matched_unet_filters(target, dims, 4, 2, 5)
    params = count_parameters(
        create_network, name="early_fusion_unet", spatial_dims=dims, base_width=base_width
    )
    assert abs(params - target) / target < 0.10
    assert len(filters) == 5 and all(b > a for a, b in zip(filters, filters[1:]))


def test_early_fusion_stacks_modalities_as_channels() -> None:
    net = create_network("early_fusion_unet", base_width=4)
    assert isinstance(net, UNet)
    assert net.filters == list(matched_unet_filters(ivdnet_parameter_count(base_width=4), 2, 4, 2, 5))
    first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 4
    assert net(torch.randn(2, 4, 32, 32)).shape == (2, 2, 32, 32)
    explicit = create_network("early_fusion_unet", filters=(4, 8, 16))
    assert explicit.filters == [4, 8, 16]
