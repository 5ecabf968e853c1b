"""The DynUNet wrapper: BatchNorm weights survive a safetensors round trip despite DynUNet's aliased blocks."""

from __future__ import annotations

import torch
from safetensors.torch import load_model, save_model

from medseg.networks import create_network


def test_batchnorm_unet_safetensors_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    net = create_network("unet", spatial_dims=2, in_channels=2, out_channels=2, filters=(4, 8, 16), norm="batch")
    net.train()
    net(torch.randn(2, 2, 16, 16))  # move the running statistics away from their initial values
    net.eval()
    save_model(net, str(tmp_path / "model.safetensors"))
    clone = create_network("unet", spatial_dims=2, in_channels=2, out_channels=2, filters=(4, 8, 16), norm="batch")
    assert load_model(clone, str(tmp_path / "model.safetensors")) == (set(), [])
    clone.eval()
    x = torch.randn(1, 2, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), net(x))
    torch.testing.assert_close(clone.input_block.norm1.running_mean, net.input_block.norm1.running_mean)
