"""Network registry and the built-in networks (importing this package registers them)."""

from __future__ import annotations

from medseg.networks import unet  # noqa: F401  (registers "unet")
from medseg.networks import ivdnet  # noqa: F401  (registers "ivdnet")
from medseg.networks import early_fusion_unet  # noqa: F401  (registers "early_fusion_unet")
from medseg.networks.registry import NetworkSpec, create_network, get_network_spec, list_networks, register_network

__all__ = ["NetworkSpec", "create_network", "get_network_spec", "list_networks", "register_network"]
