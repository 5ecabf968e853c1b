"""Network-grid outputs of the predictor: probabilities or uint8 labels from the stitched sliding window.

One pass per mirroring (TTA) flip; each pass is stitched by :func:`medseg.inference.stitch.stitch` and
consumed slab by slab, so the largest float buffer is the accumulator itself (``K x grid`` in the
accumulation dtype): probabilities are written back into it, labels are argmax'ed slab by slab on the
stitching device and copied to the host as uint8.

Where the accumulator lives and in which dtype is the case's :class:`~medseg.inference.plan.Stitching`, a value
taken from its memory plan and handed to every call. A CUDA out-of-memory error while stitching on the GPU is
not fatal: :meth:`WindowEngine.run` frees the cache and redoes the case stitching on the host, and says so (the
predictor records it in the plan).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from medseg.config import InferenceConfig
from medseg.errors import MedsegConfigError, MedsegError
from medseg.inference.plan import Stitching
from medseg.inference.stitch import SLAB_VOXELS, Chunks, WindowGrid, stitch
from medseg.model.heads import OutputHead
from medseg.model.heads.labels import SoftmaxLabels

T = TypeVar("T")


def mirror_axes(spatial_dims: int, tta: bool) -> list[tuple[int, ...]]:
    """Flip combinations of mirroring TTA (all subsets of the spatial axes of ``(B, C, *spatial)``), identity first."""
    if not tta:
        return [()]
    axes = range(2, 2 + spatial_dims)
    return [combo for n in range(spatial_dims + 1) for combo in itertools.combinations(axes, n)]


def window_chunks(inference: InferenceConfig, network: nn.Module, head: OutputHead, roi: Sequence[int]) -> Chunks | None:
    """The :class:`~medseg.inference.stitch.Chunks` of ``inference.window`` for this network and window (``None``: Gaussian).

    ``auto`` takes the network's ``inference_window`` attribute (``"chunks"`` on
    :class:`~medseg.networks.hdenseunet.HDenseUNet`; absent: ``"gaussian"``). ``chunks`` needs a softmax head
    (its probabilities are averaged) and a window deeper than ``2 * chunk_edge`` slices.

    Raises:
        MedsegConfigError: ``chunks`` with another head, or a stride/edge the window depth cannot hold.
    """
    scheme = inference.window if inference.window != "auto" else getattr(network, "inference_window", "gaussian")
    if scheme != "chunks":
        return None
    if not isinstance(head, SoftmaxLabels):
        raise MedsegConfigError(f"inference.window: chunks averages softmax probabilities; the '{head.kind}' head is not a softmax")
    depth = int(roi[-1])
    chunks = Chunks(inference.chunk_stride or max(1, depth // 4), inference.chunk_edge)
    try:
        chunks.check(depth)
    except ValueError as exc:
        raise MedsegConfigError(f"inference.chunk_stride/chunk_edge: {exc}") from None
    return chunks


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
        runner: the network call of a non-PyTorch backend, ``(n, C, *roi) -> (n, K, *roi)`` on the CPU
            (:mod:`medseg.inference.backends`); ``None``: ``network`` itself.
        chunks: H-DenseUNet's test-time chunks along the last axis (:class:`~medseg.inference.stitch.Chunks`:
            fixed z stride, chunk ends unscored, softmax averaged equally; ``overlap`` then sets the in-plane
            windows only); ``None``: MONAI's Gaussian windows.

    Attributes:
        slab_voxels: voxels per channel of one slab when results are consumed slab by slab.
        compile_seconds: the first compiled call's time (``None`` before it, or without ``compile``).
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
        runner: Callable[[torch.Tensor], torch.Tensor] | None = None,
        chunks: Chunks | None = None,
    ) -> None:
        self.network = network
        self.runner = runner
        self.head = head
        self.device = device
        self.roi = tuple(int(r) for r in roi)
        self.overlap = overlap
        self.sw_batch_size = sw_batch_size
        self.tta = tta
        self.amp = amp and device.type == "cuda"
        self.on_windows = on_windows
        if chunks is not None:
            chunks.check(self.roi[-1])
        self.chunks = chunks
        self.slab_voxels = SLAB_VOXELS
        self.compile_seconds: float | None = None
        self._compiled: Any = torch.compile(network) if compile else None

    @property
    def default_stitching(self) -> Stitching:
        """Accumulate in float32 where the network runs (what a case without a plan uses)."""
        return Stitching(self.device, torch.float32)

    @property
    def passes(self) -> int:
        """Sliding-window passes per image (8 with 3D mirroring TTA, else 1)."""
        return len(mirror_axes(len(self.roi), self.tta))

    def windows(self, spatial_shape: Sequence[int]) -> int:
        """Windows a whole prediction of an image of ``spatial_shape`` visits, TTA passes included (progress totals)."""
        return WindowGrid.build(spatial_shape, self.roi, self.overlap, self.chunks).windows * self.passes

    # ------------------------------------------------------------------ network
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """One window batch through the network (autocast on CUDA; first compiled call timed) or the backend's runner."""
        if self.runner is not None:
            out = self.runner(batch)
            if self.on_windows is not None:
                self.on_windows(batch.shape[0])
            return out
        net = self._compiled if self._compiled is not None else self.network
        t0 = time.perf_counter() if self._compiled is not None and self.compile_seconds is None else None
        with torch.autocast(device_type=self.device.type, enabled=self.amp):
            out = net(batch)
        if t0 is not None:
            self.compile_seconds = time.perf_counter() - t0
        if self.on_windows is not None:
            self.on_windows(batch.shape[0])
        return out

    def _passes(self, image: torch.Tensor, place: Stitching) -> Any:
        """Yields ``(flip axes, Stitched)`` per mirroring pass of ``image`` ``(B, C, *spatial)``."""
        for axes in mirror_axes(image.ndim - 2, self.tta):
            x = torch.flip(image, axes) if axes else image
            yield axes, stitch(self.forward, x, self.roi, self.overlap, self.sw_batch_size, self.device, place.device, place.dtype, chunks=self.chunks)

    # ------------------------------------------------------------------ outputs
    @torch.inference_mode()
    def probabilities(self, image: torch.Tensor, place: Stitching | None = None) -> torch.Tensor:
        """``(B, C, *spatial)`` -> ``(B, P, *spatial)`` probabilities on the stitching device (accumulation dtype).

        Without TTA they are written into the accumulator (a view of it; no second buffer).
        """
        place = place or self.default_stitching
        total: torch.Tensor | None = None
        n = 0
        for axes, st in self._passes(image, place):
            n += 1
            size0 = st.grid.size[0]
            for a, b, logits in st.slabs(st.slab_rows(self.slab_voxels)):
                probs = self.head.probabilities(logits)
                if total is None:
                    view = st.accum[(slice(None), slice(None), *st.grid.crop())]
                    inplace = not self.tta and view.shape[1] == probs.shape[1]
                    total = view if inplace else torch.zeros((probs.shape[0], probs.shape[1], *st.grid.size), dtype=place.dtype, device=place.device)
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
    def labels(self, image: torch.Tensor, place: Stitching | None = None) -> torch.Tensor:
        """``(B, C, *spatial)`` -> ``(B, *spatial)`` label values on the host (uint8 when they fit).

        The argmax runs slab by slab on the stitching device; no full-size float output is made.
        """
        place = place or self.default_stitching
        dtype = self.head.torch_label_dtype
        if self.tta:
            probs = self.probabilities(image, place)
            out = torch.empty((probs.shape[0], *probs.shape[2:]), dtype=dtype)
            rows = max(1, self.slab_voxels // max(1, probs[0, 0, 0].numel()))
            for a in range(0, probs.shape[2], rows):
                out[:, a : a + rows] = self.head.to_labels(probs[:, :, a : a + rows].float()).to(dtype).cpu()
            return out
        ((_, st),) = list(self._passes(image, place))
        out = torch.empty((image.shape[0], *st.grid.size), dtype=dtype)
        for a, b, logits in st.slabs(st.slab_rows(self.slab_voxels)):
            out[:, a:b] = self.head.logits_to_labels(logits).to(dtype).cpu()
        return out

    # ------------------------------------------------------------------ fallback
    def run(self, place: Stitching, fn: Callable[[Stitching], T]) -> tuple[T, str | None]:
        """``fn(place)``; on a CUDA out-of-memory error, retry once stitching on the host (float32).

        Returns:
            ``(result, note)``: the note says why the case was stitched on the host instead (``None``: it was not).
        """
        try:
            return fn(place), None
        except torch.cuda.OutOfMemoryError as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else "out of memory"
            note = f"{first_line} while stitching on {place.device}: stitched on the host instead"
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            try:
                return fn(Stitching(torch.device("cpu"), torch.float32)), note
            except torch.cuda.OutOfMemoryError as again:
                raise MedsegError(f"out of memory even when stitching on the host: {again}; lower --sw-batch-size") from again


__all__ = ["WindowEngine", "mirror_axes", "window_chunks"]
