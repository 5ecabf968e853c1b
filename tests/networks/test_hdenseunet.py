"""H-DenseUNet: 2D/3D DenseUNets, slice stacking, HFF, training stages, paper-size constructors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medseg.networks import create_network
from medseg.networks.dense_unet_2d import DenseUNet2D
from medseg.networks.dense_unet_3d import DenseUNet3D
from medseg.networks.hdenseunet import HDenseUNet, HybridFeatureFusion, slab_to_stack, stack_slices, unstack_slices

TINY = {"init_features": 8, "growth_rate": 4, "block_config": (1, 1, 1, 1), "bn_size": 2,
        "decoder_widths": (16, 8, 8, 8, 8)}


def _hybrid(**kwargs) -> HDenseUNet:
    torch.manual_seed(0)
    return HDenseUNet(**{"hff_channels": 6, "net2d": TINY, "net3d": TINY, **kwargs})


def test_output_shapes() -> None:
    net2d = DenseUNet2D(**TINY).eval()
    features, logits = net2d.forward_features(torch.randn(3, 3, 32, 64))
    assert features.shape == (3, 8, 32, 64) and logits.shape == (3, 3, 32, 64)
    net3d = DenseUNet3D(**TINY).eval()
    assert net3d(torch.randn(1, 4, 32, 64, 12)).shape == (1, 3, 32, 64, 12)
    assert DenseUNet3D(**TINY, out_channels=None).eval()(torch.randn(1, 4, 32, 32, 8)).shape == (1, 8, 32, 32, 8)
    net = _hybrid()
    train_out = net.train()(torch.randn(2, 1, 32, 32, 8))
    assert isinstance(train_out, list) and [o.shape for o in train_out] == [(2, 3, 32, 32, 8)] * 2
    assert net.eval()(torch.randn(2, 1, 32, 32, 8)).shape == (2, 3, 32, 32, 8)
    assert _hybrid(return_2d_logits=False).train()(torch.randn(2, 1, 32, 32, 4)).shape == (2, 3, 32, 32, 4)


def test_sizes_that_do_not_fit_the_pooling_are_rejected() -> None:
    with pytest.raises(ValueError, match="divisible"):
        DenseUNet2D(**TINY)(torch.randn(1, 3, 32, 48))
    with pytest.raises(ValueError, match="divisible"):
        _hybrid().eval()(torch.randn(1, 1, 32, 32, 6))  # K must be a multiple of 4 (stem conv + pool along z)


def test_stack_slices_replicates_edges() -> None:
    k = 5
    volume = torch.arange(2 * 2 * k, dtype=torch.float32).view(2, 2, 1, 1, k).expand(2, 2, 3, 4, k).contiguous()
    stacks = stack_slices(volume, context=1)
    assert stacks.shape == (2 * k, 2 * 3, 3, 4)
    for b in range(2):
        for z in range(k):
            neighbours = [max(z - 1, 0), z, min(z + 1, k - 1)]
            expected = torch.stack([volume[b, c, :, :, n] for c in range(2) for n in neighbours])
            torch.testing.assert_close(stacks[b * k + z], expected)
    wide = stack_slices(volume[:1, :1], context=2)[:, :, 0, 0]
    assert wide[0].tolist() == [0.0, 0.0, 0.0, 1.0, 2.0] and wide[-1].tolist() == [2.0, 3.0, 4.0, 4.0, 4.0]
    centre = unstack_slices(stacks, 2)[:, 1::3]  # the centre slice of every stack, restacked along z
    torch.testing.assert_close(centre, volume)


def test_slab_to_stack_is_the_centre_stack() -> None:
    slab = torch.randn(2, 2, 4, 4, 5)
    torch.testing.assert_close(slab_to_stack(slab), stack_slices(slab, context=2)[2::5])
    with pytest.raises(ValueError):
        slab_to_stack(torch.randn(1, 1, 4, 4, 4))


def test_hff_is_sum_then_convolve() -> None:
    torch.manual_seed(0)
    hff = HybridFeatureFusion(4, 5, 3, dropout=0.3)
    hff.norm.running_mean.uniform_(-1, 1)
    hff.norm.running_var.uniform_(0.5, 2)
    hff.norm.weight.data.uniform_(0.5, 2)
    hff.norm.bias.data.uniform_(-1, 1)
    hff.eval()
    a, b = torch.randn(2, 4, 6, 6, 4), torch.randn(2, 4, 6, 6, 4)
    x = F.conv3d(a + b, hff.conv.weight, hff.conv.bias, padding=1)
    bn = hff.norm
    x = (x - bn.running_mean[:, None, None, None]) / torch.sqrt(bn.running_var[:, None, None, None] + bn.eps)
    x = torch.relu(x * bn.weight[:, None, None, None] + bn.bias[:, None, None, None])
    w, bias = hff.classifier.weight[:, :, 0, 0, 0], hff.classifier.bias
    expected = torch.einsum("bcijk,oc->boijk", x, w) + bias[:, None, None, None]
    torch.testing.assert_close(hff(a, b), expected)
    torch.testing.assert_close(hff(a, b), hff(a + b, torch.zeros_like(b)))


@pytest.mark.parametrize(("kwargs", "image_scale"), [
    ({"guidance": "paper"}, 1 / 250), ({"guidance": "code", "logit_scale": 3.0}, 1.0),
    ({"input_2d": "probabilities"}, 1.0), ({"input_2d": "scaled_logits", "logit_scale": 3.0}, 1.0),
    ({"guidance": "paper", "image_scale": 0.5}, 0.5),
])
def test_hybrid_wiring(kwargs: dict, image_scale: float) -> None:
    net = _hybrid(**kwargs).eval()
    x = torch.randn(1, 1, 32, 32, 8) * 100
    f2d, l2d = net.net2d.forward_features(stack_slices(x, 1))
    f2d, l2d = unstack_slices(f2d, 1), unstack_slices(l2d, 1)
    guide = l2d.softmax(1) if net.guidance == "paper" else 3.0 * l2d
    expected = net.hff(net.net3d.decode(torch.cat([x * image_scale, guide], 1)), f2d)
    torch.testing.assert_close(net(x), expected)
    per_slice = net.net2d(stack_slices(x, 1)[3:4])  # slice z = 3 through the 2D net alone
    torch.testing.assert_close(net.forward_2d(x)[1][..., 3], per_slice, rtol=1e-5, atol=1e-2)  # CT-sized inputs


def test_guidance_pairs_ct_and_2d_output_at_comparable_scales() -> None:
    """The paper's pairing scales the CT (the code's HU - 48, -248..202) to the probabilities' range; the legacy
    pairing (probabilities next to the unscaled CT) does not. (The code's logits x 250 are checked by the wiring
    test: their size depends on trained weights.)"""
    x = torch.linspace(-248, 202, 32 * 32 * 8).view(1, 1, 32, 32, 8)
    for kwargs, lo, hi in (({"guidance": "paper"}, 0.5, 1.5), ({"input_2d": "probabilities"}, 0, 0.01)):
        net = _hybrid(**kwargs).eval()
        with torch.no_grad():
            inp = net.input_3d(x, net.forward_2d(x)[1])
        ratio = (inp[:, 1:].abs().max() / inp[:, :1].abs().max()).item()
        assert lo < ratio < hi, (kwargs, ratio)


def test_hybrid_2d_part_has_no_dropout_by_default() -> None:
    """The code's hybrid builds its 2D DenseUNet without dropout; ``net2d: {dropout: 0.3}`` restores it."""
    x = torch.randn(1, 1, 32, 32, 4)
    for net, stochastic in ((_hybrid(freeze_batchnorm="2d"), False), (_hybrid(freeze_batchnorm="2d", net2d={**TINY, "dropout": 0.3}), True)):
        net.train()
        torch.manual_seed(1)
        a = net.forward_2d(x)[1]
        torch.manual_seed(2)
        b = net.forward_2d(x)[1]
        assert (not torch.allclose(a, b)) == stochastic
    assert set(_hybrid().state_dict()) == set(_hybrid(net2d={**TINY, "dropout": 0.3}).state_dict())


def test_code_batchnorm_freeze() -> None:
    """``freeze_batchnorm="code"``: 2D BN and the 3D dense-layer / transition BN keep their statistics, the 2D
    decoder's BN affine does not learn; the 3D stem, decoder and HFF BN learn from batches."""
    net = _hybrid(freeze_batchnorm="code").train()
    bn = torch.nn.modules.batchnorm._BatchNorm
    fixed = {name for name, m in net.named_modules() if isinstance(m, bn) and not m.training}
    learning = {name for name, m in net.named_modules() if isinstance(m, bn) and m.training}
    assert all(n.startswith("net2d.") for n in fixed if "denseblock" not in n and "transition" not in n)
    assert "net3d.encoder.features.denseblock1.denselayer1.layers.norm1" in fixed and "net3d.encoder.features.transition1.norm" in fixed
    assert {"net3d.encoder.features.norm0", "net3d.encoder.features.norm5", "net3d.decoder.stages.0.norm", "hff.norm"} <= learning
    stats = {n: m.running_mean.clone() for n, m in net.named_modules() if isinstance(m, bn)}
    before = {n: p.clone() for n, p in net.named_parameters()}
    out = net(torch.randn(1, 1, 32, 32, 8))
    (out[0].square().mean() + out[1].square().mean()).backward()
    torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1).step()
    for n, m in net.named_modules():
        if isinstance(m, bn):
            assert torch.equal(m.running_mean, stats[n]) == (n in fixed), n
    params = dict(net.named_parameters())
    assert torch.equal(params["net2d.decoder.stages.0.norm.weight"], before["net2d.decoder.stages.0.norm.weight"])
    assert not torch.equal(params["net2d.encoder.features.norm0.weight"], before["net2d.encoder.features.norm0.weight"])
    assert not torch.equal(params["net3d.encoder.features.transition1.norm.weight"], before["net3d.encoder.features.transition1.norm.weight"])
    assert not _hybrid(freeze_batchnorm="2d").train().net3d.encoder.features.transition1.norm.training is False


def test_freeze_2d_stage() -> None:
    net = _hybrid(freeze_2d=True).train()
    assert not net.net2d.training and net.net3d.training and net.hff.training
    assert not any(p.requires_grad for p in net.net2d.parameters())
    before = net.net2d.encoder.features.norm0.running_mean.clone()
    hff_logits, logits_2d = net(torch.randn(1, 1, 32, 32, 8))
    hff_logits.square().mean().backward()
    assert not logits_2d.requires_grad
    assert all(p.grad is None for p in net.net2d.parameters())
    assert net.net3d.encoder.features.conv0.weight.grad.abs().sum() > 0
    torch.testing.assert_close(net.net2d.encoder.features.norm0.running_mean, before)


@pytest.mark.parametrize("kwargs", [{"freeze_batchnorm": "2d"}, {"freeze_2d_batchnorm": True}])
def test_freeze_2d_batchnorm_stage(kwargs: dict) -> None:
    net = _hybrid(**kwargs, net2d={**TINY, "dropout": 0.3}).train()
    bns = [m for m in net.net2d.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert net.net2d.training and net.net2d.decoder.stages[-1].dropout.training
    before = bns[0].running_mean.clone()
    out = net(torch.randn(1, 1, 32, 32, 8))
    (out[0].square().mean() + out[1].square().mean()).backward()
    torch.testing.assert_close(bns[0].running_mean, before)
    assert net.net2d.encoder.features.conv0.weight.grad.abs().sum() > 0


def test_stage_flags_do_not_change_the_weights_layout(tmp_path) -> None:
    stage1 = DenseUNet2D(in_channels=3, **TINY)
    net = _hybrid(freeze_2d=True)
    net.load_2d_weights(stage1.state_dict())
    torch.testing.assert_close(net.net2d.encoder.features.conv0.weight, stage1.encoder.features.conv0.weight)
    assert set(_hybrid().state_dict()) == set(_hybrid(freeze_batchnorm="code").state_dict()) == set(net.state_dict())


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError):
        DenseUNet2D(**{**TINY, "decoder_widths": (8, 8, 8, 8)})
    with pytest.raises(ValueError):
        HDenseUNet(net2d=TINY, net3d={**TINY, "decoder_widths": (16, 8, 8, 8, 4)})  # HFF widths differ
    with pytest.raises(ValueError):
        HDenseUNet(input_2d="logits", net2d=TINY, net3d=TINY)
    with pytest.raises(ValueError):
        HDenseUNet(guidance="probabilities", net2d=TINY, net3d=TINY)
    with pytest.raises(ValueError):
        HDenseUNet(freeze_batchnorm="all", net2d=TINY, net3d=TINY)
    with pytest.raises(ValueError):
        HDenseUNet(net2d={**TINY, "in_channels": 3}, net3d=TINY)
    with pytest.raises(ValueError):
        DenseUNet3D(**TINY, transition_pool=(2, 2))


def test_paper_default_constructors() -> None:
    with torch.device("meta"):  # build only: no memory, no initialisation cost
        _check_paper_defaults()


def _check_paper_defaults() -> None:
    net2d = create_network("dense_unet_2d")
    assert net2d.encoder.out_channels == [96, 384, 768, 2112, 2208]  # stem, blocks 1-3, block 4
    # the encoder is torchvision's densenet161 without its classifier: 28,681,000 - 2,209,000 parameters
    assert sum(p.numel() for p in net2d.encoder.parameters()) == 26_472_000
    total = sum(p.numel() for p in net2d.parameters())
    assert 45e6 < total < 55e6  # 49.5 M: the decoder adds 23 M, mostly the 3x3 conv 2208 -> 768
    assert net2d.decoder.stages[0].project.in_channels == 2112 and net2d.decoder.stages[0].project.out_channels == 2208
    assert [s.conv.out_channels for s in net2d.decoder.stages] == [768, 384, 96, 96, 64]
    assert net2d.size_divisor == (32, 32)
    net3d = DenseUNet3D()
    assert net3d.encoder.out_channels == [96, 192, 224, 496, 504]
    assert net3d.size_divisor == (32, 32, 4)
    hybrid = HDenseUNet()
    assert hybrid.net2d.encoder.features.conv0.in_channels == 3 and hybrid.net3d.encoder.features.conv0.in_channels == 4
    assert hybrid.hff.conv.in_channels == 64 and hybrid.net3d.head is None
