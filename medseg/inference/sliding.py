"""Gaussian-weighted sliding-window inference (MONAI's) with mirroring TTA and a progress callback."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from monai.inferers import sliding_window_inference
from monai.inferers.utils import _get_scan_interval
from monai.data.utils import dense_patch_slices
from torch import nn

from medseg.inference.adapters import OutputAdapter


def count_windows(spatial_shape: Sequence[int], roi_size: Sequence[int], overlap: float) -> int:
    """Number of windows MONAI's sliding window visits for one image."""
    padded = [max(s, r) for s, r in zip(spatial_shape, roi_size)]
    interval = _get_scan_interval(padded, list(roi_size), len(padded), [overlap] * len(padded))
    return len(dense_patch_slices(padded, list(roi_size), interval))


def mirror_axes(spatial_dims: int, tta: bool) -> list[tuple[int, ...]]:
    """Flip combinations for mirroring TTA (all subsets of spatial axes), identity first."""
    if not tta:
        return [()]
    axes = range(2, 2 + spatial_dims)
    return [combo for n in range(spatial_dims + 1) for combo in itertools.combinations(axes, n)]


@torch.no_grad()
def sliding_window_probabilities(
    network: nn.Module,
    image: torch.Tensor,
    adapter: OutputAdapter,
    roi_size: Sequence[int],
    overlap: float = 0.5,
    sw_batch_size: int = 2,
    tta: bool = False,
    device: torch.device | None = None,
    amp: bool = False,
    on_windows: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Probabilities ``(B, P, *spatial)`` for ``image`` ``(B, C, *spatial)`` on the network grid.

    Logits are blended with a Gaussian window (MONAI ``mode="gaussian"``), turned into probabilities by
    the adapter, and averaged over the mirrored passes when ``tta`` is on.

    Args:
        on_windows: called with the number of windows just processed (progress bars).
    """
    device = device or image.device
    use_amp = amp and device.type == "cuda"

    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=device.type, enabled=use_amp):
            out = network(batch)
        if on_windows is not None:
            on_windows(batch.shape[0])
        return out.float()

    flips = mirror_axes(image.ndim - 2, tta)
    total: torch.Tensor | None = None
    for axes in flips:
        x = torch.flip(image, axes) if axes else image
        logits = sliding_window_inference(
            x, list(roi_size), sw_batch_size, run, overlap=overlap, mode="gaussian", sw_device=device, device=device
        )
        probs = adapter.probabilities(torch.as_tensor(logits))
        probs = torch.flip(probs, axes) if axes else probs
        total = probs if total is None else total.add_(probs)
    assert total is not None
    return total.div_(len(flips))


def total_windows(spatial_shape: Sequence[int], roi_size: Sequence[int], overlap: float, tta: bool) -> int:
    """Windows a whole prediction visits (including TTA passes), for progress totals."""
    return count_windows(spatial_shape, roi_size, overlap) * len(mirror_axes(len(spatial_shape), tta))


__all__ = ["count_windows", "mirror_axes", "sliding_window_probabilities", "total_windows"]
