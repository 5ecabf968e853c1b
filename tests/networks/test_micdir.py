"""MICDIR: SCG latent, node layout, output contract, shared weights across directions."""

from __future__ import annotations

import pytest
import torch

from medseg.networks import create_network, get_network_spec
from medseg.networks.blocks.scg import (
    GraphConvLayer,
    SelfConstructingGraph,
    from_nodes,
    normalize_adjacency,
    to_nodes,
)
from medseg.networks.micdir import MICDIR


def _tiny(dims: int, **overrides) -> MICDIR:
    return create_network("micdir", **{**get_network_spec("micdir").tiny_kwargs(dims), **overrides})


def test_normalized_adjacency_is_symmetric_with_spectral_radius_one() -> None:
    raw = torch.rand(2, 6, 6)
    adjacency = raw + raw.transpose(1, 2) + torch.eye(6)
    norm = normalize_adjacency(adjacency)
    torch.testing.assert_close(norm, norm.transpose(1, 2))
    degree = adjacency.sum(1)
    expected = adjacency / torch.sqrt(degree[:, :, None] * degree[:, None, :])
    torch.testing.assert_close(norm, expected, atol=1e-5, rtol=1e-5)
    eig = torch.linalg.eigvalsh(norm)
    torch.testing.assert_close(eig[:, -1], torch.ones(2), atol=1e-4, rtol=0)
    assert eig.abs().max() <= 1 + 1e-4


@pytest.mark.parametrize("dims", [2, 3])
def test_scg_adjacency_is_the_normalised_boosted_inner_product(dims: int) -> None:
    torch.manual_seed(0)
    scg = SelfConstructingGraph(dims, in_channels=8, latent_channels=5, node_grid=3).eval()
    out = scg(torch.randn(2, 8, *([6] * dims)))  # the diagonal boost is per sample either way (code)
    n = 3**dims
    assert out.nodes.shape == (2, n, 8) and out.adjacency.shape == (2, n, n) and out.z_hat.shape == (2, n, 5)
    torch.testing.assert_close(out.adjacency, out.adjacency.transpose(1, 2))
    diag = torch.diagonal(out.raw_adjacency, dim1=1, dim2=2)
    gamma = torch.sqrt(1 + 1 / diag.mean(1))
    boosted = out.raw_adjacency + torch.diag_embed(gamma[:, None] * diag) + torch.eye(n)
    torch.testing.assert_close(out.adjacency, normalize_adjacency(boosted))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)


def test_scg_samples_in_training_and_uses_the_mean_in_eval() -> None:
    scg = SelfConstructingGraph(3, 4, 3, 2, dropout=0.0)
    x = torch.randn(1, 4, 4, 4, 4)
    scg.train()
    assert not torch.equal(scg(x).raw_adjacency, scg(x).raw_adjacency)
    scg.eval()
    torch.testing.assert_close(scg(x).raw_adjacency, scg(x).raw_adjacency)


def test_batch_mean_gamma_couples_the_samples_of_a_batch() -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 4, 4, 4, 4)
    per_sample = SelfConstructingGraph(3, 4, 3, 2, batch_mean_gamma=False).eval()
    coupled = SelfConstructingGraph(3, 4, 3, 2).eval()  # default: the code's batch mean
    coupled.load_state_dict(per_sample.state_dict())
    torch.testing.assert_close(per_sample(x[:1]).z_hat, per_sample(x).z_hat[:1])  # independent of the batch
    torch.testing.assert_close(coupled(x[:1]).z_hat, per_sample(x[:1]).z_hat)  # batch of one: the same
    assert not torch.allclose(coupled(x).z_hat[:1], per_sample(x).z_hat[:1])
    # the code: z_hat and the diagonal loss with the batch mean of the per-sample gammas, the boost per sample
    out, own = coupled(x), per_sample(x)
    diag = torch.diagonal(own.raw_adjacency, dim1=1, dim2=2)
    gamma = torch.sqrt(1 + 1 / diag.mean(1))
    torch.testing.assert_close(out.z_hat, own.z_hat * (gamma.mean() / gamma).view(-1, 1, 1))
    torch.testing.assert_close(out.adjacency, own.adjacency)
    assert MICDIR().scg.batch_mean_gamma and not MICDIR(batch_mean_gamma=False).scg.batch_mean_gamma


def test_node_layout_keeps_each_position_s_channels_together() -> None:
    x = torch.arange(2 * 3 * 2 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2, 2)
    nodes = to_nodes(x)
    torch.testing.assert_close(nodes[1, 5], x[1, :, 1, 0, 1])  # node 5 = position (1, 0, 1), all channels
    torch.testing.assert_close(from_nodes(nodes, (2, 2, 2)), x)
    assert not torch.equal(x.reshape(2, 8, 3), nodes)  # the code's reshape scrambles channels and nodes


def test_graph_conv_layer_mixes_nodes_through_the_adjacency() -> None:
    layer = GraphConvLayer(4, 4, batch_norm=False, negative_slope=None, dropout=0.0)
    x = torch.randn(1, 3, 4)
    isolated = layer(x, torch.eye(3)[None])
    torch.testing.assert_close(isolated, layer.linear(x))
    weight = layer.linear.weight
    torch.testing.assert_close(weight @ weight.T, torch.eye(4), atol=1e-5, rtol=0)  # orthogonal init
    mixing = torch.tensor([[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    torch.testing.assert_close(layer(x, mixing), layer.linear(x[:, [1, 0, 2]]))


@pytest.mark.parametrize("dims", [2, 3])
def test_output_contract(dims: int) -> None:
    net = _tiny(dims).eval()
    size = (32, 32) if dims == 2 else (16, 16, 16)
    fixed, moving = torch.rand(2, 1, *size), torch.rand(2, 1, *size)
    with torch.no_grad():
        out = net(fixed, moving)
    half = tuple(s // 2 for s in size)
    assert out["flow"].shape == (2, dims, *size) and out["moved"].shape == (2, 1, *size)
    assert out["flow_half"].shape == (2, dims, *half) and out["moved_half"].shape == (2, 1, *half)
    assert out["graph_loss"].ndim == 0
    for key in ("flow", "moved", "flow_half", "moved_half", "graph_loss", "velocity"):
        assert out[key + "_reverse"].shape == out[key].shape
    # the moved image is the moving image pulled back through the returned flow
    torch.testing.assert_close(out["moved"], net.warp(moving, out["flow"]))
    with torch.no_grad():
        one_way = net(fixed, moving, bidirectional=False)
    assert "flow_reverse" not in one_way


def test_both_directions_share_the_weights() -> None:
    net = _tiny(3).eval()
    fixed, moving = torch.rand(1, 1, 16, 16, 16), torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        out = net(fixed, moving)
        swapped = net(moving, fixed, bidirectional=False)
    torch.testing.assert_close(out["flow_reverse"], swapped["flow"])
    torch.testing.assert_close(out["moved_reverse"], swapped["moved"])


def test_without_integration_the_flow_is_the_head_output() -> None:
    net = _tiny(2, integration_steps=0, flow_activation=False, half_head_channels=None).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32), bidirectional=False)
    torch.testing.assert_close(out["flow"], out["velocity"])
    assert "flow_half" not in out
    assert isinstance(net.head[-1], torch.nn.Conv2d)  # linear head; the code's ends with LeakyReLU
    assert isinstance(_tiny(2).head[-1][-1], torch.nn.LeakyReLU)


def test_flow_activation_is_the_code_s_leaky_relu_on_the_linear_head() -> None:
    torch.manual_seed(2)
    code = _tiny(2, integration_steps=0).eval()
    linear = _tiny(2, integration_steps=0, flow_activation=False).eval()
    # the last unit of each head: Sequential(conv, LeakyReLU) in the code's head, the conv alone in the linear one
    linear.load_state_dict({k.replace("head.1.0.", "head.1."): v for k, v in code.state_dict().items()})
    fixed, moving = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        a, b = code(fixed, moving, bidirectional=False), linear(fixed, moving, bidirectional=False)
    assert (b["velocity"] < 0).any()
    torch.testing.assert_close(a["velocity"], torch.nn.functional.leaky_relu(b["velocity"], 0.2))


def test_default_is_the_code_configuration() -> None:
    net = MICDIR()
    strides = [unit[0].stride[0] for unit in net.encoder]
    widths = [unit[0].out_channels for unit in net.encoder]
    assert strides == [1, 2, 2, 2, 2, 2] and widths == [16, 32, 32, 32, 32, 32]
    assert net.scg.num_nodes == 64
    assert [layer.linear.out_features for layer in net.gcn] == [16, 9]
    assert net.head[0][0].in_channels == 33 and net.half_head[0][0].in_channels == 32
    assert all(m.bias is None for m in net.encoder.modules() if isinstance(m, torch.nn.Conv3d))
    assert net.integrate.steps == 7 and net.integrate.downsize == 2
    assert net.scg.batch_mean_gamma and isinstance(net.head[-1][-1], torch.nn.LeakyReLU)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        MICDIR(spatial_dims=1)
    with pytest.raises(ValueError):
        MICDIR(decoder_channels=(32, 32))
    with pytest.raises(ValueError):
        MICDIR(gcn_channels=(16, 8))
    with pytest.raises(ValueError):
        MICDIR(node_grid=(4, 4))
    with pytest.raises(ValueError):
        _tiny(3)(torch.rand(1, 1, 16, 16, 16), torch.rand(1, 1, 16, 16, 8))


def test_a_few_training_steps_improve_the_alignment() -> None:
    from medseg.losses.registration import GlobalNCCLoss, MicdirLoss
    from medseg.networks.blocks.registration import identity_grid

    torch.manual_seed(0)
    g = identity_grid((32, 32))
    fixed = torch.exp(-((g[0] - 16) ** 2 + (g[1] - 15) ** 2) / 40)[None, None].repeat(2, 1, 1, 1)
    moving = torch.exp(-((g[0] - 18.5) ** 2 + (g[1] - 13) ** 2) / 40)[None, None].repeat(2, 1, 1, 1)
    net = _tiny(2, integration_steps=4)
    loss_fn, ncc = MicdirLoss(spatial_dims=2), GlobalNCCLoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(40):
        loss = loss_fn(net(fixed, moving), fixed, moving)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        out = net(fixed, moving)
    assert ncc(out["moved"], fixed).item() < ncc(moving, fixed).item() - 0.05
    assert ncc(out["moved_reverse"], moving).item() < ncc(fixed, moving).item() - 0.05


@pytest.mark.parametrize("pipeline", ["brain_micdir", "brain_micdir_gpu"])
def test_pipelines_use_the_code_s_64_node_graph_and_flags(pipeline: str) -> None:
    from medseg.config import bundled_pipeline, load_pipeline
    from medseg.model.package import build_network

    config = load_pipeline(bundled_pipeline(pipeline))
    net = build_network(config.network)
    assert net.scg.num_nodes == 64 and net.scg.batch_mean_gamma and isinstance(net.head[-1][-1], torch.nn.LeakyReLU)
    # the CPU grid (96^3) leaves a 3^3 deepest map: adaptive pooling still gives 4^3 = 64 nodes
    latent = net.scg.eval()(torch.randn(1, 32, 3, 3, 3))
    assert latent.adjacency.shape == (1, 64, 64) and latent.grid == (4, 4, 4)
