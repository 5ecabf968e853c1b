"""Network registry and the built-in networks: one module per network, each registers itself.

The modules are imported when the registry is first asked (:data:`~medseg.networks.registry.NETWORKS`),
so adding a network means adding one file here and nothing else.
"""

from __future__ import annotations

from medseg.networks.registry import NETWORKS, NetworkSpec, create_network, get_network_spec, list_networks, register_network

__all__ = ["NETWORKS", "NetworkSpec", "create_network", "get_network_spec", "list_networks", "register_network"]
