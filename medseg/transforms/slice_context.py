"""2.5D slice context: every slice of a volume carries its neighbours as extra channels.

A 2D network run slice by slice (``network.slice_axis``) with ``network.slice_context: k`` sees, for each slice
``s``, the slices ``s - k .. s + k`` stacked as channels; slices beyond the volume's ends are replicated edge
slices (H-DenseUNet's three-slice input, Li et al. 2018). The stacking is done once on the whole
preprocessed volume, before patches are cropped (training) or windows slid (validation, prediction), so
patches one slice thick and sliding windows see the true neighbours everywhere, and only the first and
last slices of the volume are padded.

The channel order is that of :func:`medseg.networks.hdenseunet.stack_slices`, which the hybrid network uses
inside: a 2D DenseUNet trained on these stacks loads into ``hdenseunet.net2d`` unchanged.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform

from medseg.config import NetworkConfig
from medseg.networks.hdenseunet import stack_slices


def stack_neighbours(image: torch.Tensor, axis: int, context: int) -> torch.Tensor:
    """Stack each slice along spatial ``axis`` with its ``context`` neighbours on each side as channels.

    Shapes: ``(C, *S) -> (C * (2 * context + 1), *S)`` (3 spatial axes); channel ``c * (2k + 1) + o`` holds
    modality ``c`` at slice offset ``o - k`` (edges replicated).

    Example:
        >>> v = torch.arange(3.0).view(1, 1, 1, 3)
        >>> stack_neighbours(v, axis=2, context=1)[:, 0, 0].tolist()
        [[0.0, 0.0, 1.0], [0.0, 1.0, 2.0], [1.0, 2.0, 2.0]]
    """
    if image.ndim != 4 or axis not in (0, 1, 2):
        raise ValueError(f"expected (C, I, J, K) and an axis in 0..2, got {tuple(image.shape)} and {axis}")
    if context == 0:
        return image
    moved = image.movedim(1 + axis, -1)[None]  # (1, C, A, B, N)
    stacks = stack_slices(moved, context)  # (N, C * (2k + 1), A, B)
    return stacks.permute(1, 2, 3, 0).movedim(-1, 1 + axis).contiguous()


class SliceContextd(MapTransform):
    """Dictionary version of :func:`stack_neighbours` for the image key(s); spatial metadata is unchanged.

    Args:
        keys: image keys (never the label).
        axis: spatial slice axis (``network.slice_axis``).
        context: neighbours on each side (``network.slice_context``).
    """

    def __init__(self, keys: Sequence[str], axis: int, context: int) -> None:
        super().__init__(list(keys))
        if context < 0:
            raise ValueError(f"slice context must be >= 0, got {context}")
        self.axis, self.context = axis, context

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            x = d[key]
            plain = x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)
            out = stack_neighbours(plain, self.axis, self.context)
            if isinstance(x, MetaTensor):
                out = MetaTensor(out, meta=x.meta, applied_operations=list(x.applied_operations))
            d[key] = out
        return d


def slice_context_transforms(network: NetworkConfig, keys: Sequence[str] = ("image",)) -> list[MapTransform]:
    """``[SliceContextd]`` when the network asks for slice context, else nothing."""
    if not network.slice_context or network.slice_axis is None:
        return []
    return [SliceContextd(keys, network.slice_axis, network.slice_context)]
