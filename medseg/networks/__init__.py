"""Network registry and the built-in networks (importing this package registers them)."""

from __future__ import annotations

from medseg.networks import dense_unet_2d, dense_unet_3d, hdenseunet, unet  # noqa: F401  (registers them)
from medseg.networks.registry import NetworkSpec, create_network, get_network_spec, list_networks, register_network

__all__ = ["NetworkSpec", "create_network", "get_network_spec", "list_networks", "register_network"]
