"""``ensemble``: several registry networks behind one module, their softmax probabilities averaged.

Lets a model package hold the average prediction of networks trained together (e.g. the two networks of
the semi-supervised mode) while staying a normal package: the manifest names ``ensemble`` with its
members' names and arguments, the weights are one safetensors file (``members.0.*``, ``members.1.*``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from medseg.networks.blocks.slicewise import SliceWise
from medseg.networks.registry import create_network, register_network


def ensemble_member(config: Any) -> dict[str, Any]:
    """``{"name", "kwargs", "slice_axis"}`` of a network config (pydantic model or mapping)."""
    get = config.get if isinstance(config, Mapping) else lambda key, default=None: getattr(config, key, default)
    return {"name": get("name"), "kwargs": dict(get("kwargs", None) or {}), "slice_axis": get("slice_axis", None)}


def _tiny_members(dims: int) -> dict[str, Any]:
    unet = {"spatial_dims": dims, "in_channels": 1, "out_channels": 3, "filters": (4, 8, 16)}
    vnet = {"spatial_dims": dims, "in_channels": 1, "out_channels": 3, "n_filters": 4, "stages": (1, 1, 1)}
    return {"members": [{"name": "unet", "kwargs": unet}, {"name": "vnet", "kwargs": vnet}]}


@register_network(
    "ensemble",
    spatial_dims=(2, 3),
    tiny_kwargs=_tiny_members,
    description="Mean softmax of several registry networks (e.g. the two networks of semi-supervised training)",
)
class Ensemble(nn.Module):
    """Average of the members' softmax probabilities, returned as log-probabilities.

    A softmax of the output gives back the mean probabilities exactly (they sum to one), so the
    ``labels`` output head, the sliding window and the predictor need nothing special.

    Args:
        members: ``[{"name": registry name, "kwargs": {...}, "slice_axis": None | 0..2}, ...]`` (at least
            one); a member with ``slice_axis`` is a 2D network run slice by slice.
        weights: optional weight per member (normalised to sum 1); default equal.

    Shapes:
        ``(B, C_in, *spatial)`` -> ``(B, C_out, *spatial)`` (members must agree on ``C_out``). A member
        returning a deep-supervision list contributes its first (full-resolution) output.

    Example:
        >>> net = Ensemble([{"name": "unet", "kwargs": {"spatial_dims": 2, "out_channels": 2, "filters": (4, 8, 16)}}] * 2)
        >>> net(torch.zeros(1, 1, 16, 16)).exp().sum(1).allclose(torch.ones(1, 16, 16))
        True
    """

    weights: torch.Tensor  # buffer: the members' normalised weights

    def __init__(self, members: Sequence[Mapping[str, Any]], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        nets = []
        for m in members:
            unknown = set(m) - {"name", "kwargs", "slice_axis"}
            if unknown or "name" not in m:
                raise ValueError(f"ensemble member needs 'name' (and optional 'kwargs', 'slice_axis'), got {dict(m)}")
            net = create_network(m["name"], **dict(m.get("kwargs") or {}))
            axis = m.get("slice_axis")
            nets.append(SliceWise(net, axis) if axis is not None else net)
        self._set_members(nets, weights)

    def _set_members(self, nets: Sequence[nn.Module], weights: Sequence[float] | None) -> None:
        self.members = nn.ModuleList(nets)
        w = [1.0] * len(nets) if weights is None else [float(x) for x in weights]
        if len(w) != len(nets) or min(w) < 0 or sum(w) <= 0:
            raise ValueError(f"weights must be one non-negative number per member with a positive sum, got {weights}")
        self.register_buffer("weights", torch.tensor(w) / sum(w), persistent=False)

    @classmethod
    def from_modules(cls, networks: Sequence[nn.Module], weights: Sequence[float] | None = None) -> Ensemble:
        """An ensemble of already built networks (shared, not copied: e.g. the live networks of a training run)."""
        if not networks:
            raise ValueError("an ensemble needs at least one member")
        ensemble = cls.__new__(cls)
        nn.Module.__init__(ensemble)
        ensemble._set_members(networks, weights)
        return ensemble

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total: torch.Tensor | None = None
        for weight, net in zip(self.weights, self.members):
            out = net(x)
            out = out[0] if isinstance(out, (list, tuple)) else out
            p = torch.softmax(out.float(), dim=1) * weight
            total = p if total is None else total + p
        assert total is not None
        return torch.log(total.clamp_min(1e-12))
