"""medseg's Gaussian sliding window: MONAI's windows and weights, stitched in bounded memory.

The windows (positions, padding of small images) and the Gaussian weights are exactly those of
``monai.inferers.sliding_window_inference(mode="gaussian")``, and the accumulation visits the windows in
the same order, so in float32 the logits agree with MONAI's to rounding (<= 1e-5, asserted by the tests
and by ``benchmarks/``). We write our own stitching because MONAI's

- keeps a full-resolution float count map beside the output and returns the whole logit volume, which
  the caller then turns into another full-size probability volume and a one-hot or argmax;
- recomputes the Gaussian for every call and accumulates only in the input dtype.

Here the Gaussian is cached, the accumulator may be float16/bfloat16 (the GPU default: half the largest
buffer), the normaliser (the sum of window weights) is rebuilt slab by slab and never held at full
resolution, and results are consumed slab by slab: probabilities are written back into the accumulator,
label maps are argmax'ed on the device into uint8 without a full-size float output.

With :class:`Chunks` (H-DenseUNet's test-time scheme, ``lib/funcs.py: predict_tumor_inwindow`` of the
authors' code) the same engine slides chunks along the last axis at a fixed stride, scores only each chunk's
interior slices with equal weight (Gaussian in-plane, where the code has no in-plane windows) and averages
softmax probabilities instead of logits.

Layouts: images ``(B, C, *spatial)``; the accumulator ``(B, K, *padded)`` (K network output channels).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.data.utils import compute_importance_map, dense_patch_slices

#: default voxels per slab when results are consumed slab by slab (4 MB per float32 channel)
SLAB_VOXELS = 1 << 20


@dataclass(frozen=True)
class Chunks:
    """H-DenseUNet's test-time chunks along the last axis (z) of the window (the authors' ``predict_tumor_inwindow``).

    The window's depth is the training chunk's; windows start every ``stride`` slices (the code: depth // 4),
    the last one flush with the image's end; each chunk's ``edge`` first and last slices are not scored (the
    code's ``[1:-1]``); the chunks' softmax probabilities are averaged with equal weight along z (Gaussian
    in-plane). Slices no chunk scores (the image's own first and last ``edge`` slices) are background with
    probability 1, as the code leaves them at probability 0 for liver and tumour.

    Example:
        >>> chunk_weights((3, 3, 4), Chunks(stride=1), 0.125, "cpu", torch.float32)[1, 1].tolist()  # in-plane centre
        [0.0, 1.0, 1.0, 0.0]
    """

    stride: int
    edge: int = 1

    def check(self, depth: int) -> None:
        """Raise ``ValueError`` if chunks of ``depth`` slices would leave interior slices unscored."""
        if depth - 2 * self.edge < 1 or not 1 <= self.stride <= depth - 2 * self.edge:
            raise ValueError(
                f"chunks of {depth} slices with {self.edge} unscored at each end need a z stride in [1, {depth - 2 * self.edge}], got {self.stride}"
            )


def scan_interval(size: Sequence[int], roi: Sequence[int], overlap: float) -> tuple[int, ...]:
    """Step between window corners per axis: ``int(roi * (1 - overlap))`` (at least 1), the whole window where it
    spans the axis. The rule of MONAI's private ``_get_scan_interval``, written here so that we import no
    private MONAI name; ``tests/inference`` checks it against MONAI's windows."""
    return tuple(int(r) if int(r) == int(s) else max(1, int(int(r) * (1 - overlap))) for s, r in zip(size, roi))


@dataclass(frozen=True)
class WindowGrid:
    """Where the windows of one image go (MONAI's scan: same padding, interval and order).

    Attributes:
        size: spatial size of the image.
        padded: size after padding the image up to the window where it is smaller.
        roi: window size.
        pad: ``(low, high)`` padding per spatial axis (MONAI pads symmetrically, low side first).
        starts: ``(windows, ndim)`` window corners in padded coordinates, in MONAI's visiting order.
    """

    size: tuple[int, ...]
    padded: tuple[int, ...]
    roi: tuple[int, ...]
    pad: tuple[tuple[int, int], ...]
    starts: np.ndarray

    @classmethod
    def build(cls, size: Sequence[int], roi: Sequence[int], overlap: float, chunks: Chunks | None = None) -> WindowGrid:
        """``chunks``: the last axis steps by ``chunks.stride`` instead of the overlap's interval."""
        size, roi = tuple(int(s) for s in size), tuple(int(r) for r in roi)
        if len(size) != len(roi):
            raise ValueError(f"window {roi} and image {size} differ in dimensions")
        padded = tuple(max(s, r) for s, r in zip(size, roi))
        pad = tuple(((p - s) // 2, (p - s) - (p - s) // 2) for s, p in zip(size, padded))
        interval = scan_interval(padded, roi, overlap)
        if chunks is not None and roi[-1] != padded[-1]:
            interval = (*interval[:-1], chunks.stride)
        slices = dense_patch_slices(padded, roi, interval, return_slice=False)
        starts = np.asarray([[s[0] for s in sl] for sl in slices], dtype=np.int64).reshape(-1, len(size))  # type: ignore[index]  # return_slice=False: index tuples
        return cls(size, padded, roi, pad, starts)

    @property
    def windows(self) -> int:
        return len(self.starts)

    def window(self, i: int) -> tuple[slice, ...]:
        return tuple(slice(int(s), int(s) + r) for s, r in zip(self.starts[i], self.roi))

    def crop(self) -> tuple[slice, ...]:
        """Padded coordinates -> the image's own region."""
        return tuple(slice(lo, lo + s) for (lo, _), s in zip(self.pad, self.size))


@functools.lru_cache(maxsize=16)
def gaussian_weights(roi: tuple[int, ...], sigma_scale: float, device: str, dtype: torch.dtype) -> torch.Tensor:
    """MONAI's Gaussian importance map for one window (``roi``), cached per device and dtype."""
    return compute_importance_map(roi, mode="gaussian", sigma_scale=sigma_scale, device=device, dtype=dtype)


@functools.lru_cache(maxsize=16)
def chunk_weights(roi: tuple[int, ...], chunks: Chunks, sigma_scale: float, device: str, dtype: torch.dtype) -> torch.Tensor:
    """``roi``-shaped weights of :class:`Chunks`: MONAI's Gaussian in-plane, 1 along z except ``chunks.edge``
    slices at each end (0: not scored)."""
    chunks.check(roi[-1])
    plane = compute_importance_map((*roi[:-1], 1), mode="gaussian", sigma_scale=sigma_scale, device=device, dtype=dtype)
    along = torch.zeros(roi[-1], device=device, dtype=dtype)
    along[chunks.edge : roi[-1] - chunks.edge] = 1.0
    return plane * along


def new_accumulator(shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The stitching buffer (a separate function so tests can inject an out-of-memory failure)."""
    return torch.zeros(tuple(shape), dtype=dtype, device=device)


def _pad(image: torch.Tensor, grid: WindowGrid) -> torch.Tensor:
    if not any(lo or hi for lo, hi in grid.pad):
        return image
    flat = [v for lo_hi in reversed(grid.pad) for v in lo_hi]  # F.pad wants the last axis first
    return F.pad(image, flat, mode="constant", value=0.0)


@dataclass
class Stitched:
    """Weighted window outputs summed over the padded image, before normalisation.

    Attributes:
        accum: ``(B, K, *padded)`` sum of ``weight * output`` over windows (accumulation dtype); with
            ``chunks`` the outputs are softmax probabilities.
        grid: the windows.
        weights: the weights of one window on the stitching device (float32).
        chunks: :class:`Chunks` when the windows are H-DenseUNet's chunks.
    """

    accum: torch.Tensor
    grid: WindowGrid
    weights: torch.Tensor
    chunks: Chunks | None = None

    def normaliser(self, lo: int, hi: int) -> torch.Tensor:
        """``(1, 1, hi - lo, *padded[1:])`` float32 sum of window weights over padded rows ``lo:hi`` of axis 0.

        Built by visiting the windows that cross the slab in MONAI's order, so the sums are MONAI's count map.
        """
        grid, r0 = self.grid, self.grid.roi[0]
        out = torch.zeros((1, 1, hi - lo, *grid.padded[1:]), dtype=self.weights.dtype, device=self.weights.device)
        for i in np.flatnonzero((grid.starts[:, 0] < hi) & (grid.starts[:, 0] + r0 > lo)):
            s0 = int(grid.starts[i, 0])
            a, b = max(lo, s0), min(hi, s0 + r0)
            rest = grid.window(int(i))[1:]
            index: tuple[int | slice, ...] = (0, 0, slice(a - lo, b - lo), *rest)
            out[index] += self.weights[(slice(a - s0, b - s0),)]
        return out

    def slabs(self, slab: int) -> Iterator[tuple[int, int, torch.Tensor]]:
        """Normalised logits slab by slab along the first spatial axis, in the image's own coordinates.

        Yields:
            ``(a, b, logits)`` with ``logits`` ``(B, K, b - a, *size[1:])`` float32 on the stitching device. With
            ``chunks``: the log of the averaged probabilities (softmax of them gives the average back), and
            background (channel 0) with probability 1 where no chunk scored a voxel.
        """
        grid = self.grid
        lo0 = grid.pad[0][0]
        rest = grid.crop()[1:]
        for a in range(0, grid.size[0], max(1, slab)):
            b = min(a + slab, grid.size[0])
            norm = self.normaliser(a + lo0, b + lo0)[(slice(None), slice(None), slice(None), *rest)]
            part = self.accum[(slice(None), slice(None), slice(a + lo0, b + lo0), *rest)]
            if self.chunks is None:
                yield a, b, part.float() / norm
                continue
            covered = norm > 0
            probs = torch.where(covered, part.float() / norm.clamp_min(torch.finfo(torch.float32).tiny), 0.0)
            probs[:, :1] += (~covered).float()
            yield a, b, probs.clamp_min_(torch.finfo(torch.float32).tiny).log_()

    def slab_rows(self, slab_voxels: int = SLAB_VOXELS) -> int:
        """Rows of axis 0 per slab so that one slab holds about ``slab_voxels`` voxels per channel."""
        plane = int(np.prod(self.grid.size[1:])) or 1
        return max(1, min(self.grid.size[0], slab_voxels // plane))


def stitch(
    forward: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    roi: Sequence[int],
    overlap: float = 0.5,
    sw_batch_size: int = 2,
    sw_device: torch.device | None = None,
    stitch_device: torch.device | None = None,
    accumulate: torch.dtype = torch.float32,
    sigma_scale: float = 0.125,
    on_windows: Callable[[int], None] | None = None,
    chunks: Chunks | None = None,
) -> Stitched:
    """Run ``forward`` on every window of ``image`` and sum the Gaussian-weighted outputs.

    Args:
        forward: window batch ``(n, C, *roi)`` -> output ``(n, K, *roi)`` (same spatial size).
        image: ``(B, C, *spatial)``; windows are cut from it and moved to ``sw_device``.
        sw_device: where the network runs (default: the image's device).
        stitch_device: where the accumulator lives (default: ``sw_device``).
        accumulate: accumulator dtype (float32; float16 or bfloat16 halve it).
        on_windows: called with the number of windows just processed.
        chunks: H-DenseUNet's chunks along the last axis (:class:`Chunks`): the outputs' softmax is averaged.
    """
    sw_device = sw_device or image.device
    stitch_device = stitch_device or sw_device
    grid = WindowGrid.build(image.shape[2:], roi, overlap, chunks)
    padded = _pad(image, grid)

    def window_weights(device: torch.device) -> torch.Tensor:
        if chunks is None:
            return gaussian_weights(grid.roi, sigma_scale, str(device), torch.float32)
        return chunk_weights(grid.roi, chunks, sigma_scale, str(device), torch.float32)

    weights_sw = window_weights(sw_device)
    weights = weights_sw if stitch_device == sw_device else window_weights(stitch_device)
    batch = image.shape[0]
    total = batch * grid.windows
    accum: torch.Tensor | None = None
    for first in range(0, total, sw_batch_size):
        index = range(first, min(first + sw_batch_size, total))
        where = [(i // grid.windows, grid.window(i % grid.windows)) for i in index]
        parts = [padded[(slice(b, b + 1), slice(None), *w)] for b, w in where]
        windows = (parts[0] if len(parts) == 1 else torch.cat(parts)).to(sw_device, non_blocking=True)
        out = forward(windows)
        if chunks is not None:  # the code averages each chunk's softmax (K.softmax before the sum)
            out = out.float().softmax(1)
        if tuple(out.shape[2:]) != grid.roi:
            raise ValueError(f"network output {tuple(out.shape[2:])} differs from the window {grid.roi} in size")
        if accum is None:
            accum = new_accumulator((batch, out.shape[1], *grid.padded), accumulate, stitch_device)
        weighted = (out.mul_(weights_sw) if out.dtype == torch.float32 else out.float() * weights_sw).to(stitch_device, accumulate)
        for k, (b, w) in enumerate(where):
            target: tuple[int | slice, ...] = (b, slice(None), *w)
            accum[target] += weighted[k]
        if on_windows is not None:
            on_windows(len(where))
    assert accum is not None
    return Stitched(accum, grid, weights, chunks)


def stitched_logits(stitched: Stitched) -> torch.Tensor:
    """The whole normalised ``(B, K, *size)`` float32 logit volume (what MONAI returns; tests and benchmarks)."""
    grid = stitched.grid
    out = torch.empty((stitched.accum.shape[0], stitched.accum.shape[1], *grid.size), dtype=torch.float32, device=stitched.accum.device)
    for a, b, logits in stitched.slabs(stitched.slab_rows()):
        out[:, :, a:b] = logits
    return out


__all__ = ["SLAB_VOXELS", "Chunks", "scan_interval", "Stitched", "WindowGrid", "chunk_weights", "gaussian_weights", "new_accumulator", "stitch", "stitched_logits"]
