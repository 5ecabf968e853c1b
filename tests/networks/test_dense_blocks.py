"""Dense blocks (MONAI's, reused), the DenseUNet encoder/decoder, and torchvision DenseNet weight loading."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from safetensors.torch import save_file

from medseg.errors import MedsegModelError
from medseg.networks.blocks.dense import DenseEncoder, DenseUNetDecoder, dense_block, dense_layer, transition
from medseg.networks.blocks.dense_unet import torchvision_densenet_to_encoder
from medseg.networks.dense_unet_2d import DenseUNet2D

TINY_2D = {"init_features": 8, "growth_rate": 4, "block_config": (1, 2, 1, 1), "bn_size": 2,
           "decoder_widths": (16, 8, 8, 8, 8)}


def test_dense_layer_keeps_its_input_and_adds_growth_channels() -> None:
    layer = dense_layer(2, 6, growth_rate=4, bn_size=2).eval()
    x = torch.randn(2, 6, 8, 8)
    y = layer(x)
    assert y.shape == (2, 10, 8, 8)
    torch.testing.assert_close(y[:, :6], x)
    names = [n for n, _ in layer.layers.named_children()]
    assert names == ["norm1", "relu1", "conv1", "norm2", "relu2", "conv2"]  # BN-ReLU-1x1-BN-ReLU-3x3
    assert layer.layers.conv1.out_channels == 8 and layer.layers.conv1.kernel_size == (1, 1)
    assert layer.layers.conv2.kernel_size == (3, 3)


def test_dense_block_and_in_plane_transition_shapes() -> None:
    block = dense_block(3, 6, layers=3, growth_rate=4)
    assert block(torch.randn(1, 6, 4, 4, 4)).shape == (1, 18, 4, 4, 4)
    trans = transition(3, 18, 9, pool=(2, 2, 1))
    assert trans(torch.randn(1, 18, 8, 8, 6)).shape == (1, 9, 4, 4, 6)
    assert transition(2, 18, 9)(torch.randn(1, 18, 8, 8)).shape == (1, 9, 4, 4)
    with pytest.raises(ValueError):
        transition(3, 18, 9, pool=(2, 2))


def test_encoder_widths_and_scales_follow_densenet_bookkeeping() -> None:
    enc = DenseEncoder(3, 2, 8, 4, (1, 2, 1), bn_size=2, transition_pool=(2, 2, 1))
    # stem 8; block1 8+4=12 -> 6; block2 6+8=14 -> 7; block3 7+4=11
    assert enc.out_channels == [8, 12, 14, 11]
    feats = enc(torch.randn(1, 2, 32, 32, 8))
    assert [tuple(f.shape[1:]) for f in feats] == [(8, 16, 16, 4), (12, 8, 8, 2), (14, 4, 4, 2), (11, 2, 2, 2)]
    assert (feats[-1] >= 0).all()  # last block after BN + ReLU


def test_decoder_upsampling_undoes_the_encoder_in_reverse() -> None:
    strides = [(2, 2, 2), (2, 2, 2), (2, 2, 1), (2, 2, 1), (2, 2, 1)]
    dec = DenseUNetDecoder(3, [4, 5, 6, 7, 8], strides, (6, 5, 4, 4, 3), skips=True)  # widths fit skips 2, 1, 0
    assert [stage.upsample.scale_factor for stage in dec.stages] == [
        (2.0, 2.0, 1.0), (2.0, 2.0, 1.0), (2.0, 2.0, 1.0), (2.0, 2.0, 2.0), (2.0, 2.0, 2.0)
    ]
    # deepest skip always projected (paper's line0); others only where widths differ; last stage has no skip
    assert [s.project is not None for s in dec.stages] == [True, False, False, False, False]
    assert [s.has_skip for s in dec.stages] == [True, True, True, True, False]
    mismatched = DenseUNetDecoder(3, [4, 5, 6, 7, 8], strides, (8, 5, 4, 4, 3), skips=True)
    assert [s.project is not None for s in mismatched.stages] == [True, True, False, False, False]
    with pytest.raises(ValueError, match="widths"):
        DenseUNetDecoder(3, [4, 5, 6, 7, 8], strides, (8, 7, 6, 5))


def test_decoder_skips_flag_changes_the_graph() -> None:
    torch.manual_seed(0)
    with_skips = DenseUNet2D(**TINY_2D, decoder_skips=True).eval()
    without = DenseUNet2D(**TINY_2D, decoder_skips=False).eval()
    assert sum(p.numel() for p in with_skips.parameters()) > sum(p.numel() for p in without.parameters())
    x = torch.randn(1, 3, 32, 32)
    for net, depends in ((with_skips, True), (without, False)):
        feats = net.encoder(x)
        out = net.decoder(feats)
        perturbed = [f + 1.0 for f in feats[:-1]] + [feats[-1]]  # change every skip, keep the bottom
        changed = not torch.allclose(net.decoder(perturbed), out)
        assert changed == depends


def _torchvision_keys(init: int, growth: int, bn_size: int, blocks: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """torchvision ``DenseNet.state_dict()`` names and shapes, enumerated independently of medseg's code."""
    def bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
        return {f"{prefix}.{k}": (c,) for k in ("weight", "bias", "running_mean", "running_var")} | {
            f"{prefix}.num_batches_tracked": ()}

    keys = {"features.conv0.weight": (init, 3, 7, 7)} | bn("features.norm0", init)
    c = init
    for b, n in enumerate(blocks, start=1):
        for j in range(1, n + 1):
            p = f"features.denseblock{b}.denselayer{j}"
            keys |= bn(f"{p}.norm1", c) | bn(f"{p}.norm2", bn_size * growth)
            keys[f"{p}.conv1.weight"] = (bn_size * growth, c, 1, 1)
            keys[f"{p}.conv2.weight"] = (growth, bn_size * growth, 3, 3)
            c += growth
        if b < len(blocks):
            keys |= bn(f"features.transition{b}.norm", c)
            keys[f"features.transition{b}.conv.weight"] = (c // 2, c, 1, 1)
            c //= 2
    keys |= bn("features.norm5", c)
    keys |= {"classifier.weight": (1000, c), "classifier.bias": (1000,)}
    return keys


def _random_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {k: (torch.tensor(7) if not s else torch.rand(s, generator=g)) for k, s in shapes.items()}


def test_load_torchvision_densenet_layout(tmp_path) -> None:
    state = _random_state(_torchvision_keys(8, 4, 2, (1, 2, 1, 1)))
    save_file(state, str(tmp_path / "densenet.safetensors"))
    net = DenseUNet2D(**TINY_2D)
    decoder_before = {k: v.clone() for k, v in net.decoder.state_dict().items()}
    net.load_encoder_weights(tmp_path / "densenet.safetensors")
    enc = net.encoder.state_dict()
    torch.testing.assert_close(enc["features.conv0.weight"], state["features.conv0.weight"])
    torch.testing.assert_close(
        enc["features.denseblock2.denselayer2.layers.conv2.weight"],
        state["features.denseblock2.denselayer2.conv2.weight"],
    )
    torch.testing.assert_close(enc["features.transition3.conv.weight"], state["features.transition3.conv.weight"])
    torch.testing.assert_close(enc["features.norm5.running_var"], state["features.norm5.running_var"])
    assert len(enc) == len(state) - 2  # every encoder tensor came from the file (classifier dropped)
    for k, v in net.decoder.state_dict().items():
        torch.testing.assert_close(v, decoder_before[k])


def test_legacy_torchvision_names_are_mapped() -> None:
    mapped = torchvision_densenet_to_encoder({"features.denseblock1.denselayer3.norm.2.running_mean": torch.zeros(1)})
    assert list(mapped) == ["features.denseblock1.denselayer3.layers.norm2.running_mean"]


def test_load_torchvision_densenet_rejects_a_file_that_does_not_fit(tmp_path) -> None:
    state = _random_state(_torchvision_keys(8, 4, 2, (1, 1, 1, 1)))  # one dense layer fewer than TINY_2D
    save_file(state, str(tmp_path / "other.safetensors"))
    with pytest.raises(MedsegModelError, match="missing"):
        DenseUNet2D(**TINY_2D).load_encoder_weights(tmp_path / "other.safetensors")
    with pytest.raises(MedsegModelError, match="not found"):
        DenseUNet2D(**TINY_2D).load_encoder_weights(tmp_path / "absent.safetensors")
    state = _random_state(_torchvision_keys(8, 4, 2, (1, 2, 1, 1)))
    save_file(state, str(tmp_path / "rgb.safetensors"))
    with pytest.raises(MedsegModelError, match="shape mismatch"):
        DenseUNet2D(**TINY_2D, in_channels=5).load_encoder_weights(tmp_path / "rgb.safetensors")


@pytest.mark.parametrize("dims", [2, 3])
def test_blocks_equal_monai_densenet_blocks(dims: int) -> None:
    """Our dense layer, block and transition are MONAI's (private) ones: same state-dict keys, same outputs."""
    from monai.networks.nets.densenet import _DenseBlock, _Transition

    torch.manual_seed(0)
    ours = nn.Sequential(dense_block(dims, 6, 3, 4, dropout=0.0), transition(dims, 18, 5)).eval()
    monai = nn.Sequential(_DenseBlock(dims, 3, 6, 4, 4, 0.0), _Transition(dims, 18, 5)).eval()
    assert list(ours.state_dict()) == list(monai.state_dict())
    monai.load_state_dict(ours.state_dict())
    x = torch.randn(2, 6, *([8] * dims))
    torch.testing.assert_close(ours(x), monai(x))
