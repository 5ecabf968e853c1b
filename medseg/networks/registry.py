"""Network registry: every network is created by name from a model package or a pipeline YAML.

Each entry also declares the spatial dimensions it supports and *tiny* constructor arguments that run in
a fraction of a second on a CPU; the registry sweep test exercises every entry with them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from medseg.networks.blocks.slicewise import SliceWise
from medseg.registry import Registry

Factory = Callable[..., nn.Module]


@dataclass(frozen=True)
class NetworkSpec:
    """What the registry knows about a network.

    Attributes:
        name: registry name (``create_network(name, ...)``).
        factory: class or function building the ``nn.Module``.
        spatial_dims: spatial dimensionalities the network supports, e.g. ``(2, 3)``.
        tiny_kwargs: ``dims -> kwargs`` giving a small CPU-friendly configuration.
        example_inputs: ``(dims, kwargs) -> tuple of input tensors`` for a forward pass (default: one
            ``(2, in_channels, 32, ...)`` tensor).
        output_kind: ``"labels"`` (softmax over classes), ``"nested"`` or ``"displacement"``.
        description: one line for ``medseg networks``.
    """

    name: str
    factory: Factory
    spatial_dims: tuple[int, ...] = (3,)
    tiny_kwargs: Callable[[int], dict[str, Any]] = field(default=lambda dims: {"spatial_dims": dims})
    example_inputs: Callable[[int, dict[str, Any]], tuple[torch.Tensor, ...]] | None = None
    output_kind: str = "labels"
    description: str = ""

    def make_example_inputs(self, dims: int, kwargs: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        if self.example_inputs is not None:
            return self.example_inputs(dims, kwargs)
        channels = int(kwargs.get("in_channels", 1))
        return (torch.randn(2, channels, *([32] * dims)),)


#: every network by name; the modules of ``medseg.networks`` register themselves when it is first asked
NETWORKS: Registry[NetworkSpec] = Registry("network", packages=["medseg.networks"], option="network.name")


def register_network(
    name: str,
    *,
    spatial_dims: tuple[int, ...] = (3,),
    tiny_kwargs: Callable[[int], dict[str, Any]] | None = None,
    example_inputs: Callable[[int, dict[str, Any]], tuple[torch.Tensor, ...]] | None = None,
    output_kind: str = "labels",
    description: str = "",
) -> Callable[[Factory], Factory]:
    """Decorator registering a network class or factory function under ``name``.

    Example:
        >>> @register_network("my_net", spatial_dims=(2, 3), tiny_kwargs=lambda d: {"spatial_dims": d})
        ... class MyNet(nn.Module): ...
    """

    def decorator(factory: Factory) -> Factory:
        doc = (factory.__doc__ or "").strip().splitlines()
        spec = NetworkSpec(
            name=name,
            factory=factory,
            spatial_dims=tuple(spatial_dims),
            tiny_kwargs=tiny_kwargs or (lambda dims: {"spatial_dims": dims}),
            example_inputs=example_inputs,
            output_kind=output_kind,
            description=description or (doc[0] if doc else ""),
        )
        NETWORKS.add(name, spec, owner=factory, spatial_dims=spec.spatial_dims, output_kind=output_kind)
        return factory

    return decorator


#: ``network.init_from.convert`` names: source key converters ``state_dict -> state_dict`` (e.g. a torchvision
#: DenseNet's ImageNet weights into a DenseUNet encoder: ``{path: densenet161.safetensors, convert:
#: torchvision_densenet, target: encoder}``); registered beside the blocks they convert into
WEIGHT_CONVERTERS: Registry[Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]]] = Registry(
    "converter", packages=["medseg.networks.blocks"], option="network.init_from.convert"
)


def get_network_spec(name: str) -> NetworkSpec:
    """The registry entry for ``name`` (a one-line :class:`~medseg.errors.MedsegConfigError` naming the known networks otherwise)."""
    return NETWORKS.get(name)


def create_network(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered network ``name`` with constructor arguments ``kwargs``.

    Raises:
        MedsegConfigError: unknown name.
        ValueError / TypeError: arguments the network rejects.
    """
    return get_network_spec(name).factory(**kwargs)


def list_networks(**filters: Any) -> list[str]:
    """Sorted names of every registered network (``output_kind="labels"`` etc. filter by metadata)."""
    return NETWORKS.names(**filters)


def core_network(net: nn.Module) -> nn.Module:
    """The registry network inside wrappers (DDP, torch.compile, SliceWise): what the weights belong to."""
    while True:
        inner = getattr(net, "module", None) or getattr(net, "_orig_mod", None)
        if isinstance(net, SliceWise):
            inner = net.net
        if inner is None:
            return net
        net = inner
