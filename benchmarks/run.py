"""Ratio benchmarks of medseg against MONAI's building blocks, measured in one process.

Every figure pairs medseg and MONAI on the same ``nn.Module``, input and settings; runs are interleaved
(ABAB then BABA), after warm-up, and the median of the repeats is reported. Cases (issue 9):

1. prediction latency vs ``sliding_window_inference`` (+argmax), stitching on the device and on the host;
2. orchestration overhead alone (the network is a 1x1x1 convolution);
3. peak host RAM (RSS) and, on CUDA, peak GPU memory;
4. agreement: max |logit difference| in fp32 and identical argmax;
5. Dice time and memory vs ``DiceMetric`` at 2, 14 and 105 classes, equal values;
6. training iterations/s vs a MONAI-tutorial loop, with and without data loading;
7. data pipeline samples/s vs ``CacheDataset`` + ``ThreadDataLoader``;
8. end to end, file to file, split by phase;
9. the CPU backends (OpenVINO, ONNX Runtime): network phase and file to file vs PyTorch eager and MONAI.

Usage::

    python -m benchmarks.run --device cpu             # make bench (minutes)
    python -m benchmarks.run --device cuda            # benchmarks/gpu.sh (GPU sizes)
    python -m benchmarks.run --device cpu --quick     # tiny sizes, seconds (the smoke test)

Writes ``--out``/results-<device>[-quick].json (versions, device, flags, rows) and .md (the table).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import Row, environment, markdown

PROFILES: dict[str, dict[str, Any]] = {
    "cpu": {
        "sizes": [(256, 256, 128)], "roi": (128, 128, 64), "sw_batch_size": 2, "amp": False, "repeats": 3, "warmup": 1,
        "unet_kwargs": {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "filters": [4, 8, 16]},
        "dice_size": (128, 128, 96), "e2e_size": (256, 256, 128), "e2e_spacing": (1.6, 1.6, 2.0),
        "train_patch": (64, 64, 64), "train_spacing": (1.2, 1.2, 1.2), "train_cases": 3, "train_steps": 3, "loader_batches": 6,
    },
    "cuda": {
        "sizes": [(512, 512, 300), (512, 512, 800)], "roi": (128, 128, 128), "sw_batch_size": 4, "amp": True, "repeats": 5, "warmup": 1,
        "unet_kwargs": {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "filters": [32, 64, 128, 256, 320]},
        "dice_size": (512, 512, 300), "e2e_size": (512, 512, 300), "e2e_spacing": (1.0, 1.0, 1.5),
        "train_patch": (128, 128, 128), "train_spacing": (0.6, 0.6, 0.6), "train_cases": 4, "train_steps": 20, "loader_batches": 20,
    },
    "quick": {
        "sizes": [(24, 20, 18)], "roi": (16, 16, 16), "sw_batch_size": 2, "amp": False, "repeats": 1, "warmup": 0,
        "unet_kwargs": {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "filters": [2, 4, 4]},
        "dice_size": (16, 16, 8), "e2e_size": (24, 20, 18), "e2e_spacing": (1.6, 1.6, 2.0),
        "train_patch": (16, 16, 16), "train_spacing": (6.0, 6.0, 6.0), "train_cases": 2, "train_steps": 1, "loader_batches": 1,
    },
}
CASES = ("latency", "dice", "training", "e2e", "backends")


def run(device: torch.device, cfg: dict[str, Any], cases: tuple[str, ...], on_rows: Any = None) -> list[Row]:
    from medseg.networks import create_network

    from benchmarks.prediction import dice_cases, e2e_case, latency_cases

    torch.manual_seed(0)
    unet = create_network("unet", **cfg["unet_kwargs"]).to(device).eval()
    conv = torch.nn.Conv3d(1, cfg["unet_kwargs"]["out_channels"], 1).to(device).eval()
    classes = cfg["unet_kwargs"]["out_channels"]
    rows: list[Row] = []
    say = lambda name: print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)  # noqa: E731
    if "latency" in cases:
        say("cases 1-4: latency, overhead, peak memory, agreement")
        rows += latency_cases(cfg, device, {"unet": unet, "conv1x1x1": conv}, classes)
        if on_rows is not None:
            on_rows(rows)  # results so far, written after every case
    if "dice" in cases:
        say("case 5: Dice")
        rows += dice_cases(cfg, device)
        if on_rows is not None:
            on_rows(rows)  # results so far, written after every case
    if "training" in cases:
        from benchmarks.training import training_cases

        say("cases 6-7: training, data pipeline")
        rows += training_cases(cfg, device)
        if on_rows is not None:
            on_rows(rows)  # results so far, written after every case
    if "e2e" in cases:
        say("case 8: end to end")
        rows += e2e_case(cfg, device, unet, classes)
        if on_rows is not None:
            on_rows(rows)  # results so far, written after every case
    if "backends" in cases:
        from benchmarks.backends import backend_cases

        say("case 9: CPU backends")
        rows += backend_cases(cfg, device, unet, classes)
        if on_rows is not None:
            on_rows(rows)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (default: the profile's)")
    parser.add_argument("--sizes", nargs="+", default=None, metavar="XxYxZ", help="prediction volume sizes (default: the profile's)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA is not available on this machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    profile = "quick" if args.quick else device.type
    cfg = dict(PROFILES[profile])
    if args.repeats:  # a short lease of a GPU machine: fewer repeats, same cases
        cfg["repeats"] = args.repeats
    if args.sizes:
        cfg["sizes"] = [tuple(int(v) for v in size.split("x")) for size in args.sizes]
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"results-{device.type}{'-quick' if args.quick else ''}"
    result: dict[str, Any] = {}

    def write(rows: list[Row]) -> None:
        env = environment(device, {"profile": profile, "amp": cfg["amp"], "sw_batch_size": cfg["sw_batch_size"], "roi": list(cfg["roi"])})
        env["seconds"] = round(time.perf_counter() - start, 1)
        env["command"] = " ".join(["python -m benchmarks.run", *(argv if argv is not None else sys.argv[1:])])
        result.update(environment=env, config={k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}, rows=[r.to_dict() for r in rows])
        (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str))
        (args.out / f"{stem}.md").write_text(markdown(rows, env))

    rows = run(device, cfg, tuple(args.cases), write)
    write(rows)
    print((args.out / f"{stem}.md").read_text())
    return result


if __name__ == "__main__":
    main()
