"""Run a 2D network over 3D patches, one slice at a time."""

from __future__ import annotations

import torch
from torch import nn


class SliceWise(nn.Module):
    """Wrap a 2D network so the 3D trainer and predictor can drive it with patches one slice thick.

    The wrapper moves ``slice_axis`` last, folds it into the batch, runs the 2D network on
    ``(B*S, C, H, W)`` and unfolds the result, so ``(B, C, X, Y, Z)`` in gives ``(B, C_out, X, Y, Z)`` out.
    Deep-supervision lists are unfolded element by element. For 2.5D input (each slice with its neighbours as
    channels, ``network.slice_context``) the volume is stacked before patches or windows are taken, see
    :mod:`medseg.transforms.slice_context`.

    Args:
        net: a 2D network ``(B, C, H, W) -> (B, C_out, H, W)``.
        slice_axis: spatial axis (0, 1 or 2) that is sliced.

    Example:
        >>> wrapped = SliceWise(nn.Conv2d(1, 2, 3, padding=1), slice_axis=2)
        >>> wrapped(torch.zeros(1, 1, 16, 16, 4)).shape
        torch.Size([1, 2, 16, 16, 4])
    """

    def __init__(self, net: nn.Module, slice_axis: int = 2) -> None:
        super().__init__()
        if slice_axis not in (0, 1, 2):
            raise ValueError(f"slice_axis must be 0, 1 or 2, got {slice_axis}")
        self.net = net
        self.slice_axis = slice_axis

    def _order(self) -> list[int]:
        """``(B, C, X, Y, Z)`` -> ``(B, S, C, H, W)``: one permutation (``movedim`` to ``-1`` exports to ONNX with a wrong perm)."""
        a = 2 + self.slice_axis
        return [0, a, 1, *[d for d in (2, 3, 4) if d != a]]

    def _fold(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        y = x.permute(self._order())  # (B, S, C, H, W)
        b, s = y.shape[0], y.shape[1]
        return y.reshape(b * s, *y.shape[2:]), (b, s)

    def _unfold(self, y: torch.Tensor, b: int, s: int) -> torch.Tensor:
        y = y.reshape(b, s, *y.shape[1:])  # (B, S, C, H, W)
        order = self._order()
        return y.permute([order.index(d) for d in range(5)])

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        folded, (b, s) = self._fold(x)
        out = self.net(folded)
        if isinstance(out, (list, tuple)):
            return [self._unfold(o, b, s) for o in out]
        return self._unfold(out, b, s)
