"""Every registered network: forward in each supported dimensionality, shapes, no NaN, backward, safetensors round trip."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_model, save_model

from medseg.errors import MedsegConfigError
from medseg.networks import create_network, get_network_spec, list_networks

CASES = [(name, dims) for name in list_networks() for dims in get_network_spec(name).spatial_dims]


def _tensors(output: object) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        return [t for v in output.values() for t in _tensors(v)]
    if isinstance(output, (list, tuple)):
        return [t for v in output for t in _tensors(v)]
    return []


@pytest.mark.parametrize(("name", "dims"), CASES, ids=[f"{n}-{d}d" for n, d in CASES])
def test_network_sweep(name: str, dims: int, tmp_path) -> None:
    torch.manual_seed(0)
    spec = get_network_spec(name)
    kwargs = spec.tiny_kwargs(dims)
    net = create_network(name, **kwargs)
    inputs = spec.make_example_inputs(dims, kwargs)
    net.train()
    outputs = _tensors(net(*inputs))
    # 0-dim tensors are auxiliary scalars (e.g. MICDIR's graph loss): finite, but not (B, C, *spatial) maps
    maps = [o for o in outputs if o.ndim > 0]
    assert maps, "network returned no (B, C, *spatial) tensor"
    batch = inputs[0].shape[0]
    for out in maps:
        assert out.shape[0] == batch
        assert out.ndim == dims + 2, f"output {tuple(out.shape)} is not (B, C, *spatial) for {dims}D"
    for out in outputs:
        assert torch.isfinite(out).all()
    loss = sum(o.float().square().mean() for o in outputs if o.is_floating_point())
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads), "no gradient reached the parameters"

    net.eval()
    with torch.no_grad():
        reference = _tensors(net(*inputs))
    save_model(net, str(tmp_path / "model.safetensors"))
    clone = create_network(name, **kwargs)
    load_model(clone, str(tmp_path / "model.safetensors"))
    clone.eval()
    with torch.no_grad():
        again = _tensors(clone(*inputs))
    for a, b in zip(reference, again, strict=True):
        torch.testing.assert_close(a, b)


def test_unknown_network_names_the_known_ones() -> None:
    with pytest.raises(MedsegConfigError, match="unet"):
        create_network("no_such_network")


def test_unet_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        create_network("unet", spatial_dims=4)
    with pytest.raises(ValueError):
        create_network("unet", filters=(8, 16), strides=(1, 2, 2))
