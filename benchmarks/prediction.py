"""Cases 1-5 and 8: prediction latency, orchestration overhead, peak memory, agreement, Dice, end to end.

Every pair runs the same ``nn.Module`` on the same tensor with the same ROI, overlap (0.5), Gaussian
blending and sw_batch_size; both produce a uint8 label map on the host.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from benchmarks.common import Row, interleaved
from benchmarks.memory import PeakMemory
from medseg.model.heads import create_head
from medseg.inference.engine import WindowEngine
from medseg.inference.plan import Stitching
from medseg.inference.stitch import stitch, stitched_logits


def monai_labels(net: nn.Module, x: torch.Tensor, roi: tuple[int, ...], sw: int, device: torch.device, stitch_on: str, amp: bool) -> torch.Tensor:
    """MONAI's bare path: sliding_window_inference (gaussian, overlap 0.5) then argmax, uint8 on the host."""

    def predictor(batch: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
            return net(batch)

    with torch.inference_mode():
        inputs = x.to(device) if stitch_on == "device" else x
        out_device = device if stitch_on == "device" else torch.device("cpu")
        logits = sliding_window_inference(inputs, roi, sw, predictor, overlap=0.5, mode="gaussian", sw_device=device, device=out_device)
        return logits.argmax(1).to(torch.uint8).cpu()


def medseg_engine(
    net: nn.Module, classes: int, roi: tuple[int, ...], sw: int, device: torch.device, stitch_on: str, amp: bool
) -> tuple[WindowEngine, Stitching]:
    """The window engine and the stitching place the plan would choose for ``stitch_on``."""
    head = create_head({"kind": "labels"}, {i: str(i) for i in range(classes)})
    engine = WindowEngine(net, head, device, roi, 0.5, sw, tta=False, amp=amp)
    on_device = stitch_on == "device"
    place = Stitching(device if on_device else torch.device("cpu"), torch.float16 if device.type == "cuda" and on_device else torch.float32)
    return engine, place


def medseg_labels(engine: WindowEngine, place: Stitching, x: torch.Tensor) -> torch.Tensor:
    """medseg's path (the predictor's network phase): our stitching, argmax slab by slab on the device, uint8."""
    inputs = x.pin_memory().to(engine.device, non_blocking=True) if place.device.type == "cuda" else x
    return engine.labels(inputs, place)


def latency_cases(cfg: dict[str, Any], device: torch.device, nets: dict[str, nn.Module], classes: int) -> list[Row]:
    """Cases 1-4 for every size, stitching place and network (a UNet; a 1x1x1 convolution for the overhead)."""
    rows: list[Row] = []
    roi, sw = tuple(cfg["roi"]), cfg["sw_batch_size"]
    places = ["device", "host"] if device.type == "cuda" else ["host"]
    for size in cfg["sizes"]:
        x = torch.randn(1, 1, *size)
        label = "x".join(map(str, size))
        in_mb = x.numel() * 4 / 2**20
        for name, net in nets.items():
            case = "1 latency" if name == "unet" else "2 overhead (1x1x1 conv)"
            for place in places:
                engine, stitching = medseg_engine(net, classes, roi, sw, device, place, cfg["amp"])
                fns = {"medseg": lambda: medseg_labels(engine, stitching, x), "monai": lambda: monai_labels(net, x, roi, sw, device, place, cfg["amp"])}
                mem: dict[str, PeakMemory] = {}
                if name == "unet":  # the warm-up round, measured for peak memory (its times are not used)
                    for key, fn in fns.items():
                        with PeakMemory(device=device) as mem[key]:
                            fn()
                t = interleaved(fns, cfg["repeats"], cfg["warmup"] - 1 if mem else cfg["warmup"], device)
                setting = f"{label}, roi {'x'.join(map(str, roi))}, stitch on {place}"
                rows.append(Row(case, setting, "latency", t["medseg"], t["monai"], "s", target="ratio <= 1.0", met=t["medseg"] <= t["monai"]))
                if not mem:
                    continue
                rows.append(Row("3 peak host RAM", setting, "peak RSS growth", mem["medseg"].host / 2**20, mem["monai"].host / 2**20, "MB",
                                note=f"input {in_mb:.0f} MB float32"))
                if device.type == "cuda":
                    rows.append(Row("3 peak GPU memory", setting, "max_memory_allocated", mem["medseg"].device_peak / 2**20, mem["monai"].device_peak / 2**20, "MB"))
        rows.extend(agreement(nets["unet"], x, roi, sw, device, label))
    return rows


def agreement(net: nn.Module, x: torch.Tensor, roi: tuple[int, ...], sw: int, device: torch.device, label: str) -> list[Row]:
    """Case 4: fp32 logits of our stitching vs MONAI's (no AMP), and the argmax."""
    with torch.inference_mode():
        xd = x.to(device)
        ref = sliding_window_inference(xd, roi, sw, net, overlap=0.5, mode="gaussian")
        ours = stitched_logits(stitch(net, xd, roi, 0.5, sw))
        diff = float((ours - ref).abs().max())
        same = float((ours.argmax(1) == ref.argmax(1)).float().mean())
    return [
        Row("4 agreement", f"{label}, fp32", "max abs logit difference", diff, 1e-5, "", target="<= 1e-5", met=diff <= 1e-5, note="MONAI column = bound"),
        Row("4 agreement", f"{label}, fp32", "identical argmax fraction", same, 1.0, "", better="higher", target="1.0", met=same == 1.0),
    ]


def dice_cases(cfg: dict[str, Any], device: torch.device) -> list[Row]:
    """Case 5: per-class Dice of two label maps, medseg (one bincount) vs MONAI DiceMetric (one-hot)."""
    from monai.metrics import DiceMetric
    from monai.networks.utils import one_hot

    from medseg.metrics.dice import dice_from_counts, label_counts

    rows = []
    rng = np.random.default_rng(0)
    size = tuple(cfg["dice_size"])
    for classes in (2, 14, 105):
        # uint8 label maps, as medseg and most tools write them; both sides get the same tensors
        ref = torch.from_numpy(rng.integers(0, classes, size, dtype=np.uint8)).to(device)
        noise = torch.from_numpy(rng.integers(0, classes, size, dtype=np.uint8)).to(device)
        pred = torch.where(torch.from_numpy(rng.random(size) < 0.8).to(device), ref, noise)
        labels = list(range(classes))

        def ours() -> np.ndarray:
            return dice_from_counts(label_counts(pred, ref, labels))

        metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)

        def theirs() -> np.ndarray:
            p = one_hot(pred[None, None], classes, dim=1)
            r = one_hot(ref[None, None], classes, dim=1)
            return metric(p, r)[0].cpu().numpy()

        t = interleaved({"medseg": ours, "monai": theirs}, cfg["repeats"], cfg["warmup"], device)
        mem = {}
        for key, fn in (("medseg", ours), ("monai", theirs)):
            with PeakMemory(device=device) as m:
                fn()
            mem[key] = m.device_peak if device.type == "cuda" else m.host
        diff = float(np.abs(ours() - theirs()).max())
        setting = f"{'x'.join(map(str, size))}, {classes} classes"
        speedup = t["monai"] / t["medseg"]
        rows.append(Row("5 Dice", setting, "time", t["medseg"], t["monai"], "s", target=">= 5x faster", met=speedup >= 5 and diff <= 1e-6,
                        note=f"{speedup:.1f}x faster, max |dDice| {diff:.1e}"))
        rows.append(Row("5 Dice", setting, "peak memory", mem["medseg"] / 2**20, mem["monai"] / 2**20, "MB"))
    return rows


def e2e_case(cfg: dict[str, Any], device: torch.device, net: nn.Module, classes: int) -> list[Row]:
    """Case 8: file to file. medseg's Predictor vs MONAI's tutorial pipeline (LoadImaged .. Invertd, SaveImage)."""
    from benchmarks.e2e import make_case, medseg_file_to_file, monai_file_to_file

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src, package = make_case(root, cfg, net, classes)
        phases: dict[str, dict[str, float]] = {}
        peaks: dict[str, int] = {}
        for r in range(cfg["repeats"] + cfg["warmup"]):
            order = ["medseg", "monai"] if r % 2 == 0 else ["monai", "medseg"]
            for who in order:
                fn = medseg_file_to_file if who == "medseg" else monai_file_to_file
                with PeakMemory(device=device) as m:
                    timing = fn(src, root / f"{who}.nii.gz", package, device, cfg)
                if r >= cfg["warmup"]:
                    for k, v in timing.items():
                        phases.setdefault(who, {}).setdefault(k, []).append(v)  # type: ignore[attr-defined]
                    peaks[who] = max(peaks.get(who, 0), m.host)
        med = {w: {k: float(np.median(v)) for k, v in p.items()} for w, p in phases.items()}
        size = "x".join(map(str, cfg["e2e_size"]))
        for phase in ("read", "preprocess", "network", "restore", "write", "total"):
            rows.append(Row("8 end to end", f"{size} .nii.gz, {device.type}", phase, med["medseg"][phase], med["monai"][phase], "s",
                            **({"target": "ratio <= 1.0", "met": med["medseg"]["total"] <= med["monai"]["total"]} if phase == "total" else {})))
        input_mb = 4 * int(np.prod(cfg["e2e_size"])) / 2**20
        ratio = peaks["medseg"] / 2**20 / input_mb
        rows.append(Row("8 end to end", f"{size}, host RAM", "peak RSS growth, file to file", peaks["medseg"] / 2**20, peaks["monai"] / 2**20, "MB",
                        target="medseg <= 4x input float32", met=ratio <= 4.0, note=f"medseg = {ratio:.2f}x the input's {input_mb:.0f} MB"))
    return rows


__all__ = ["dice_cases", "e2e_case", "latency_cases", "medseg_labels", "monai_labels"]
