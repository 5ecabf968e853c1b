"""Inference memory plan: host and device memory of one prediction, estimated before it runs.

The estimate is shape x channels x dtype of every buffer the predictor holds at each phase
(preprocess, network, restore), plus the network's working memory for one window batch (measured once
by a probe: CUDA's peak allocator statistic on the GPU, the sizes of the layers' outputs on the CPU).
The plan picks where to stitch (on the GPU when the accumulator fits in its free memory, else on the
host) and the accumulation dtype (float16 on the GPU, float32 on the host); ``medseg predict --plan``
prints it. The CPU estimate is checked against the measured peak by the tests (within 2x).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform
from torch import nn

from medseg.inference.stitch import SLAB_VOXELS, Chunks, WindowGrid

#: fraction of the GPU's free memory the plan lets the stitching buffers use
DEVICE_HEADROOM = 0.8
#: accumulator dtypes by name
ACCUMULATE = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_BYTES = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2}


def grid_shape(spatial: Sequence[MapTransform], shape: Sequence[int], affine: np.ndarray, channels: int = 1) -> tuple[int, ...]:
    """Network-grid shape of an image of ``shape``/``affine`` after the spatial transforms (nothing is resampled).

    Runs fresh copies of the transforms lazily on a zero-stride tensor: MONAI computes the output shape
    exactly as the real transforms will, without touching voxels.
    """
    import copy

    data: Any = {"image": MetaTensor(torch.zeros(1).expand(channels, *shape), affine=torch.as_tensor(affine))}
    for t in spatial:
        lazy: Any = copy.deepcopy(t)
        lazy.lazy = True
        data = lazy(data)
    return tuple(int(s) for s in data["image"].peek_pending_shape())


def resident_bytes() -> int:
    """This process's resident memory now (bytes; 0 where ``/proc`` is missing)."""
    return _proc_status("VmRSS")


def _proc_status(field: str) -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _rss_growth(fn: Any) -> tuple[int, Any]:
    """``(peak RSS growth while running fn, its result)``: the kernel's high-water mark, reset first (Linux; else 0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    before = resident_bytes()
    out = fn()
    return (max(0, _proc_status("VmHWM") - before) if reset and before else 0), out


def probe_workspace(
    network: nn.Module, channels: int, roi: Sequence[int], batch: int, device: torch.device, amp: bool, runner: Any = None
) -> tuple[int, int]:
    """``(bytes the network needs for one window batch beyond its weights, its output channels)``.

    CUDA: the allocator's peak during one forward. CPU: the peak RSS growth of one forward (Linux's high-water
    mark), at least three times the largest layer output (input, output and one skip connection of that size).
    ``runner``: a non-PyTorch backend's network call (:mod:`medseg.inference.backends`), probed instead; its
    first call allocates the runtime's working memory, which stays resident (the caller counts it there): the
    workspace is then the output copies and the input batch.
    """
    x = torch.zeros((batch, channels, *roi), device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        with torch.inference_mode(), torch.autocast("cuda", enabled=amp):
            out = network(x)
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base), int(out.shape[1])
    if runner is not None:  # the runtime keeps the working memory of its first call: resident after the probe
        out = runner(x)
        return 2 * out.numel() * out.element_size() + x.numel() * 4, int(out.shape[1])
    sizes: list[int] = []

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            sizes.append(out.numel() * out.element_size())

    handles = [m.register_forward_hook(hook) for m in network.modules() if not list(m.children())]
    try:
        with torch.inference_mode():
            grown, out = _rss_growth(lambda: network(x))
    finally:
        for h in handles:
            h.remove()
    return max(grown, 3 * max(sizes, default=x.numel() * 4) + x.numel() * 4), int(out.shape[1])


@dataclass(frozen=True)
class CaseShapes:
    """The sizes of one case that the plan depends on (read from headers alone for ``--plan``)."""

    input_shape: tuple[int, ...]
    grid_shape: tuple[int, ...]
    channels: int
    resample: bool
    keep_probabilities: bool = False


@dataclass(frozen=True)
class EngineProfile:
    """What a predictor's window engine costs, independent of the case.

    Attributes:
        roi / overlap / sw_batch_size / slab_voxels: the window settings.
        passes: sliding-window passes (1, or 8 with 3D mirroring TTA).
        outputs / probabilities: network output channels and probability channels of the head.
        workspace: the network's bytes for one window batch (:func:`probe_workspace`).
        parameters: bytes of the network's weights.
        resident: the process's resident memory outside the case (libraries, weights, a backend's compiled model and arena).
        chunks: H-DenseUNet's chunk scheme when the engine uses it (its z stride sets the window count).
    """

    roi: tuple[int, ...]
    overlap: float
    sw_batch_size: int
    passes: int
    outputs: int
    probabilities: int
    workspace: int
    parameters: int
    slab_voxels: int = SLAB_VOXELS
    resident: int = 0
    chunks: Chunks | None = None


@dataclass(frozen=True)
class Stitching:
    """Where the accumulator of the window engine lives and in which dtype (what the engine takes from a plan)."""

    device: torch.device
    dtype: torch.dtype


@dataclass(frozen=True)
class MemoryPlan:
    """Where one prediction stitches and how much memory it needs (bytes, by buffer, at the peak phase).

    Attributes:
        input_shape / grid_shape: spatial shape of the input and of the network grid.
        channels / outputs / probabilities: input modalities, network output channels, probability channels.
        windows: sliding-window passes x windows.
        stitch_on: ``"device"`` (the GPU) or ``"host"``.
        accumulate: accumulator dtype name.
        host / device: estimated peak bytes per buffer (the phase with the largest total).
        free_device: free GPU memory when planned (``None`` on the CPU).
        fallback: set when a CUDA out-of-memory error moved the stitching to the host.
        resident: the process's resident memory before the case (what the report's peak RSS adds the case to).
    """

    input_shape: tuple[int, ...]
    grid_shape: tuple[int, ...]
    channels: int
    outputs: int
    probabilities: int
    windows: int
    device: str
    stitch_on: str
    accumulate: str
    resample: bool
    keep_probabilities: bool
    host: dict[str, int] = field(default_factory=dict)
    device_bytes: dict[str, int] = field(default_factory=dict)
    free_device: int | None = None
    reason: str = ""
    fallback: str | None = None
    resident: int = 0

    @property
    def host_peak(self) -> int:
        """Peak host bytes of the case's buffers (the RSS growth of one file-to-file prediction)."""
        return sum(self.host.values())

    @property
    def process_peak(self) -> int:
        """Peak resident memory of the process (the report's ``peak_memory.rss_mb``): resident + the case's peak."""
        return self.resident + self.host_peak

    @property
    def device_peak(self) -> int:
        return sum(self.device_bytes.values())

    @property
    def input_bytes(self) -> int:
        """float32 size of the input volume (all channels): the unit of the CPU RAM target."""
        return 4 * self.channels * int(np.prod(self.input_shape))

    def stitching(self, device: torch.device) -> Stitching:
        """The engine's stitching place for a network on ``device``."""
        return Stitching(device if self.stitch_on == "device" else torch.device("cpu"), ACCUMULATE[self.accumulate])

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(host_peak=self.host_peak, device_peak=self.device_peak, input_bytes=self.input_bytes, process_peak=self.process_peak)
        return out

    def format(self) -> str:
        """Human-readable plan (``medseg predict --plan``)."""
        mb = lambda b: f"{b / 2**20:,.1f} MB"  # noqa: E731
        lines = [
            f"input {'x'.join(map(str, self.input_shape))} x {self.channels} ch ({mb(self.input_bytes)} as float32)"
            f" -> network grid {'x'.join(map(str, self.grid_shape))}, {self.windows} windows",
            f"device {self.device}: stitch on {self.stitch_on}, accumulate {self.accumulate}"
            f"{', resample back slab by slab' if self.resample else ''} ({self.reason})",
            f"host peak   ~{mb(self.host_peak)} ({self.host_peak / max(self.input_bytes, 1):.2f}x input): "
            + ", ".join(f"{k} {mb(v)}" for k, v in self.host.items() if v),
        ]
        if self.resident:
            lines.append(f"process peak ~{mb(self.process_peak)} RSS (resident before the case {mb(self.resident)} + the case)")
        if self.device_bytes:
            free = f", free {mb(self.free_device)}" if self.free_device is not None else ""
            lines.append(f"device peak ~{mb(self.device_peak)}{free}: " + ", ".join(f"{k} {mb(v)}" for k, v in self.device_bytes.items() if v))
        if self.fallback:
            lines.append(f"fallback: {self.fallback}")
        return "\n".join(lines)


def make_plan(
    case: CaseShapes,
    engine: EngineProfile,
    device: torch.device,
    free_device: int | None = None,
    stitch: str = "auto",
    accumulate: str = "auto",
) -> MemoryPlan:
    """Estimate buffers per phase and choose the stitching place and accumulation dtype.

    Args:
        case / engine: the case's sizes and the engine's costs.
        device: where the network runs; ``free_device``: free GPU memory (``None``: CPU).
        stitch: ``auto`` | ``device`` | ``host``; accumulate: ``auto`` | ``float32`` | ``float16`` | ``bfloat16``.
    """
    input_shape, grid, channels = case.input_shape, case.grid_shape, case.channels
    n_in, n_grid = int(np.prod(input_shape)), int(np.prod(grid))
    win = WindowGrid.build(grid, engine.roi, engine.overlap, engine.chunks)
    n_pad = int(np.prod(win.padded))
    cuda = device.type == "cuda"
    f32 = 4
    outputs, probabilities, passes = engine.outputs, engine.probabilities, engine.passes

    def sizes(on_device: bool, acc: torch.dtype) -> tuple[dict[str, int], dict[str, int]]:
        ab = _BYTES[acc]
        plane = max(1, int(np.prod(grid[1:])))
        slab = min(n_grid, max(plane, (engine.slab_voxels // plane) * plane))
        stitching = {
            "accumulator": outputs * n_pad * ab,
            "tta_total": probabilities * n_grid * ab if passes > 1 else 0,
            "slab_temporaries": (outputs + 4) * slab * f32,  # logits, normaliser, int64 argmax
        }
        window = {"network_workspace": engine.workspace, "window_batch": engine.sw_batch_size * channels * int(np.prod(engine.roi)) * f32}
        image = channels * n_in * f32  # the loaded input, held through the whole case
        host = {"input": image, "preprocessed": channels * n_grid * f32, "tta_flipped_input": channels * n_grid * f32 if passes > 1 else 0}
        dev: dict[str, int] = {}
        if cuda:
            dev = {"weights": engine.parameters, **window, "image": channels * n_grid * f32}
            (dev if on_device else host).update(stitching)
        else:
            host.update(stitching, **window)
        restore = {"labels": 2 * n_in + (0 if case.resample else n_grid), "resample_slab": (3 * probabilities + 2) * slab * f32 if case.resample else 0}
        if case.keep_probabilities:
            restore["probabilities_out"] = 3 * probabilities * n_in * f32
        host.update(restore)
        if not cuda:  # the window phase's buffers are freed before the slab-wise normalise/argmax/restore phase
            after = {k: host[k] for k in ("slab_temporaries", *restore) if k in host}
            during = {k: host[k] for k in window}
            for k in after if sum(during.values()) >= sum(after.values()) else during:
                del host[k]
        preprocess = image + 2 * channels * n_grid * f32 + channels * n_in * f32  # input, oriented copy, resampled, intensity copy
        if preprocess > sum(host.values()):  # the preprocessing phase is the peak (a finer grid than the input)
            host = {"preprocessing": preprocess}
        return host, dev

    if stitch == "auto":
        if not cuda:
            stitch_on, reason = "host", "CPU"
        else:
            acc = ACCUMULATE["float16" if accumulate == "auto" else accumulate]
            need = sum(sizes(True, acc)[1].values())
            fits = free_device is None or need <= DEVICE_HEADROOM * free_device
            stitch_on = "device" if fits else "host"
            reason = "fits in free GPU memory" if fits else "accumulator does not fit in free GPU memory"
    else:
        stitch_on, reason = stitch, "requested"
    if accumulate == "auto":
        accumulate = "float16" if cuda and stitch_on == "device" else "float32"
    host, dev = sizes(stitch_on == "device", ACCUMULATE[accumulate])
    return MemoryPlan(
        tuple(int(s) for s in input_shape), tuple(int(s) for s in grid), channels, outputs, probabilities,
        passes * win.windows, str(device), stitch_on, accumulate, case.resample, case.keep_probabilities, host, dev, free_device, reason,
        resident=engine.resident,
    )


__all__ = ["ACCUMULATE", "DEVICE_HEADROOM", "CaseShapes", "EngineProfile", "MemoryPlan", "Stitching", "grid_shape", "make_plan", "probe_workspace",
           "resident_bytes"]
