"""Network registry and the built-in networks (importing this package registers them)."""

from __future__ import annotations

from medseg.networks import micdir, unet, voxelmorph  # noqa: F401  (registers "micdir", "unet", "voxelmorph")
from medseg.networks.registry import NetworkSpec, create_network, get_network_spec, list_networks, register_network

__all__ = ["NetworkSpec", "create_network", "get_network_spec", "list_networks", "register_network"]
