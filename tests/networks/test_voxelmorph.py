"""VoxelMorph baseline: VxmDense structure on MONAI's VoxelMorphUNet, MICDIR's output contract."""

from __future__ import annotations

import pytest
import torch

from medseg.metrics.registration import inverse_consistency_error
from medseg.networks import create_network
from medseg.networks.voxelmorph import VoxelMorph


def _conv_params(cin: int, cout: int, dims: int = 3) -> int:
    return 3**dims * cin * cout + cout


def test_default_matches_vxmdense_layer_for_layer() -> None:
    # VxmDense(enc [16, 32, 32, 32], dec [32, 32, 32, 32, 32, 16, 16]): encoder convs, one conv per
    # decoder level on [upsampled, skip], extra full-resolution convs, then the 3-channel flow conv
    layers = [(2, 16), (16, 32), (32, 32), (32, 32)]  # encoder
    layers += [(32, 32), (64, 32), (64, 32), (64, 32)]  # coarsest conv, then per level on 32 + skip 32
    layers += [(32 + 16, 32), (32, 16), (16, 16), (16, 3)]  # full resolution (skip 16) and the flow
    net = VoxelMorph()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv3d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == layers
    assert sum(p.numel() for p in net.parameters()) == sum(_conv_params(a, b) for a, b in layers)
    pools = [m for m in net.modules() if isinstance(m, torch.nn.MaxPool3d)]
    assert len(pools) == 4 and net.integrate.steps == 7 and net.integrate.downsize == 2


@pytest.mark.parametrize("dims", [2, 3])
def test_starts_near_the_identity_and_keeps_the_contract(dims: int) -> None:
    net = create_network("voxelmorph", spatial_dims=dims, encoder_channels=(4, 8), decoder_channels=(8, 8, 4))
    size = (16,) * dims
    fixed, moving = torch.rand(1, 1, *size), torch.rand(1, 1, *size)
    out = net(fixed, moving)
    assert out["flow"].shape == (1, dims, *size) and out["moved"].shape == (1, 1, *size)
    assert out["flow"].abs().max() < 1e-2  # flow conv initialised from N(0, 1e-5) as VoxelMorph
    assert "flow_reverse" not in out
    torch.testing.assert_close(out["moved"], net.warp(moving, out["flow"]))


def test_bidirectional_reverse_field_is_the_inverse() -> None:
    torch.manual_seed(0)
    net = VoxelMorph(3, encoder_channels=(4, 8), decoder_channels=(8, 8, 4), bidirectional=True)
    flow_conv = net.unet.net[1].final_conv_out.conv
    torch.nn.init.normal_(flow_conv.weight, std=0.3)  # a visible field: translation plus variation
    flow_conv.bias.data = torch.tensor([1.0, -0.5, 0.5])
    fixed, moving = torch.rand(1, 1, 16, 16, 16), torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        out = net(fixed, moving)
    assert out["flow"].abs().max() > 0.3
    error = inverse_consistency_error(out["flow"], out["flow_reverse"])
    assert error.item() < 0.1 * out["flow"].norm(dim=1).mean().item()
    torch.testing.assert_close(out["moved_reverse"], net.warp(fixed, out["flow_reverse"]))


def test_rejects_bad_arguments_and_sizes() -> None:
    with pytest.raises(ValueError):
        VoxelMorph(encoder_channels=(16, 32), decoder_channels=(32, 32))
    with pytest.raises(ValueError):
        VoxelMorph(spatial_dims=4)
    net = VoxelMorph(3, encoder_channels=(4, 8), decoder_channels=(8, 8, 4))
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.rand(1, 1, 18, 16, 16), torch.rand(1, 1, 18, 16, 16))
