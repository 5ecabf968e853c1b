"""Network registry and the built-in networks (importing this package registers them)."""

from __future__ import annotations

# importing each module registers its network(s)
from medseg.networks import (  # noqa: F401
    dense_unet_2d,
    dense_unet_3d,
    early_fusion_unet,
    ensemble,
    hdenseunet,
    ivdnet,
    micdir,
    nested_resunet,
    unet,
    vnet,
    voxelmorph,
)
from medseg.networks.registry import NetworkSpec, create_network, get_network_spec, list_networks, register_network

__all__ = ["NetworkSpec", "create_network", "get_network_spec", "list_networks", "register_network"]
