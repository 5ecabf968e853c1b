"""Network-grid outputs of the predictor: probabilities or uint8 labels from the stitched sliding window.

One pass per mirroring (TTA) flip; each pass is stitched by :func:`medseg.inference.stitch.stitch` and
consumed slab by slab, so the largest float buffer is the accumulator itself (``K x grid`` in the
accumulation dtype): probabilities are written back into it, labels are argmax'ed slab by slab on the
stitching device and copied to the host as uint8.

A CUDA out-of-memory error while stitching on the GPU is not fatal: :meth:`WindowEngine.run` frees the
cache and redoes the case stitching on the host (the plan records the fallback).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from medseg.errors import MedsegError
from medseg.model.heads import OutputHead
from medseg.inference.stitch import SLAB_VOXELS, WindowGrid, stitch

T = TypeVar("T")

ACCUMULATE = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def mirror_axes(spatial_dims: int, tta: bool) -> list[tuple[int, ...]]:
    """Flip combinations of mirroring TTA (all subsets of the spatial axes of ``(B, C, *spatial)``), identity first."""
    if not tta:
        return [()]
    axes = range(2, 2 + spatial_dims)
    return [combo for n in range(spatial_dims + 1) for combo in itertools.combinations(axes, n)]


class WindowEngine:
    """Sliding-window probabilities and labels on the network grid.

    Args:
        network: ``(n, C, *roi) -> (n, K, *roi)`` (eval mode, on ``device``).
        head: turns logits into probabilities and labels.
        device: where the network runs.
        roi / overlap / sw_batch_size / tta: sliding-window settings.
        amp: autocast the network on CUDA.
        compile: run the network through ``torch.compile`` (the first call's cost lands in ``compile_seconds``).
        on_windows: progress callback (windows processed).

    Attributes:
        stitch_device: where the accumulator lives (set by the plan; default ``device``).
        accumulate: accumulator dtype (``torch.float32`` unless the plan picks fp16/bf16).
        slab_voxels: voxels per channel of one slab when results are consumed slab by slab.
        fallbacks: notes of CUDA out-of-memory fallbacks to host stitching.
    """

    def __init__(
        self,
        network: nn.Module,
        head: OutputHead,
        device: torch.device,
        roi: Sequence[int],
        overlap: float,
        sw_batch_size: int,
        tta: bool,
        amp: bool = False,
        compile: bool = False,
        on_windows: Callable[[int], None] | None = None,
    ) -> None:
        self.network = network
        self.head = head
        self.device = device
        self.roi = tuple(int(r) for r in roi)
        self.overlap = overlap
        self.sw_batch_size = sw_batch_size
        self.tta = tta
        self.amp = amp and device.type == "cuda"
        self.on_windows = on_windows
        self.stitch_device = device
        self.accumulate = torch.float32
        self.slab_voxels = SLAB_VOXELS
        self.fallbacks: list[str] = []
        self.compile_seconds: float | None = None
        self._compiled: Any = torch.compile(network) if compile else None

    @property
    def passes(self) -> int:
        """Sliding-window passes per image (8 with 3D mirroring TTA, else 1)."""
        return len(mirror_axes(len(self.roi), self.tta))

    def windows(self, spatial_shape: Sequence[int]) -> int:
        """Windows a whole prediction of an image of ``spatial_shape`` visits, TTA passes included (progress totals)."""
        return WindowGrid.build(spatial_shape, self.roi, self.overlap).windows * self.passes

    # ------------------------------------------------------------------ network
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """One window batch through the network (autocast on CUDA; first compiled call timed)."""
        net = self._compiled if self._compiled is not None else self.network
        t0 = time.perf_counter() if self._compiled is not None and self.compile_seconds is None else None
        with torch.autocast(device_type=self.device.type, enabled=self.amp):
            out = net(batch)
        if t0 is not None:
            self.compile_seconds = time.perf_counter() - t0
        if self.on_windows is not None:
            self.on_windows(batch.shape[0])
        return out

    def _passes(self, image: torch.Tensor, stitch_device: torch.device) -> Any:
        """Yields ``(flip axes, Stitched)`` per mirroring pass of ``image`` ``(B, C, *spatial)``."""
        for axes in mirror_axes(image.ndim - 2, self.tta):
            x = torch.flip(image, axes) if axes else image
            yield axes, stitch(
                self.forward, x, self.roi, self.overlap, self.sw_batch_size, self.device, stitch_device, self.accumulate
            )

    # ------------------------------------------------------------------ outputs
    @torch.inference_mode()
    def probabilities(self, image: torch.Tensor, stitch_device: torch.device | None = None) -> torch.Tensor:
        """``(B, C, *spatial)`` -> ``(B, P, *spatial)`` probabilities on the stitching device (accumulation dtype).

        Without TTA they are written into the accumulator (a view of it; no second buffer).
        """
        stitch_device = stitch_device or self.stitch_device
        total: torch.Tensor | None = None
        n = 0
        for axes, st in self._passes(image, stitch_device):
            n += 1
            size0 = st.grid.size[0]
            for a, b, logits in st.slabs(st.slab_rows(self.slab_voxels)):
                probs = self.head.probabilities(logits)
                if total is None:
                    view = st.accum[(slice(None), slice(None), *st.grid.crop())]
                    inplace = not self.tta and view.shape[1] == probs.shape[1]
                    total = view if inplace else torch.zeros((probs.shape[0], probs.shape[1], *st.grid.size), dtype=self.accumulate, device=stitch_device)
                if axes:
                    probs = torch.flip(probs, axes)
                    if 2 in axes:
                        a, b = size0 - b, size0 - a
                if self.tta:
                    total[:, :, a:b] += probs.to(total.dtype)
                else:
                    total[:, :, a:b] = probs.to(total.dtype)
        assert total is not None
        return total.div_(n) if n > 1 else total

    @torch.inference_mode()
    def labels(self, image: torch.Tensor, stitch_device: torch.device | None = None) -> torch.Tensor:
        """``(B, C, *spatial)`` -> ``(B, *spatial)`` label values on the host (uint8 when they fit).

        The argmax runs slab by slab on the stitching device; no full-size float output is made.
        """
        stitch_device = stitch_device or self.stitch_device
        dtype = self.head.torch_label_dtype
        if self.tta:
            probs = self.probabilities(image, stitch_device)
            out = torch.empty((probs.shape[0], *probs.shape[2:]), dtype=dtype)
            rows = max(1, self.slab_voxels // max(1, probs[0, 0, 0].numel()))
            for a in range(0, probs.shape[2], rows):
                out[:, a : a + rows] = self.head.to_labels(probs[:, :, a : a + rows].float()).to(dtype).cpu()
            return out
        ((_, st),) = list(self._passes(image, stitch_device))
        out = torch.empty((image.shape[0], *st.grid.size), dtype=dtype)
        for a, b, logits in st.slabs(st.slab_rows(self.slab_voxels)):
            out[:, a:b] = self.head.logits_to_labels(logits).to(dtype).cpu()
        return out

    # ------------------------------------------------------------------ fallback
    def run(self, fn: Callable[[torch.device], T]) -> T:
        """``fn(stitch_device)``; on a CUDA out-of-memory error while stitching off the host, retry on the host."""
        try:
            return fn(self.stitch_device)
        except torch.cuda.OutOfMemoryError as exc:
            if self.stitch_device.type == "cpu" and self.fallbacks:
                raise MedsegError(f"out of memory even when stitching on the host: {exc}; lower --sw-batch-size") from exc
            first_line = str(exc).splitlines()[0] if str(exc) else "out of memory"
            self.fallbacks.append(f"{first_line} while stitching on {self.stitch_device}: stitched on the host instead")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self.stitch_device = torch.device("cpu")
            try:
                return fn(self.stitch_device)
            except torch.cuda.OutOfMemoryError as again:
                raise MedsegError(f"out of memory even when stitching on the host: {again}; lower --sw-batch-size") from again


__all__ = ["ACCUMULATE", "WindowEngine", "mirror_axes"]
