"""Claim experiment: IVD-Net (one path per modality, hyper-dense connections) vs an early-fusion UNet of
the same parameter count, on the Dixon spine phantom; plus each model's per-modality contribution.

Both networks train with the same pipeline (``pipelines/ivd_ivdnet_phantom.yaml`` and
``pipelines/ivd_early_fusion_phantom.yaml`` differ only in the network) on the same generated dataset, for
each seed (the seed sets the validation split, the initialisation and the slice sampling). The exported
model (best validation Dice) then segments the held-out phantoms from their NIfTI files through the
predictor (Dice in each case's own geometry), once with all four images and once with each image
replaced by 0 after min-max scaling.

Usage:
    python pipelines/experiments/ivd_fusion.py                      # 2 seeds x 2 networks, ~30 min on 1 CPU core
    python pipelines/experiments/ivd_fusion.py --seeds 0 1 2 --epochs 60
    python pipelines/experiments/ivd_fusion.py --quick              # smoke test (minutes, meaningless numbers)

Prints markdown tables and writes ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.config import PipelineConfig, bundled_pipeline, load_pipeline
from medseg.data.layouts import load_decathlon
from medseg.data.registry import generate_phantom
from medseg.model.package import core_network, load_model_package
from medseg.engine.variants import create_trainer
from medseg.inference.ablation import contribution_table, modality_contributions

NETWORKS = {"IVD-Net": "ivd_ivdnet_phantom", "early-fusion UNet": "ivd_early_fusion_phantom"}
QUICK = {"train.epochs": 2, "train.iterations_per_epoch": 3, "train.val_every": 1}


def _config(pipeline: str, seed: int, dataset: Path, extra: dict[str, Any]) -> PipelineConfig:
    overrides = {"seed": seed, "data.synthetic": None, "data.dataset": str(dataset), **extra}
    return load_pipeline(bundled_pipeline(pipeline), overrides)


def _dataset(out: Path, quick: bool) -> tuple[Path, dict[str, Any]]:
    """Generate the phantom dataset of the pipelines once (both networks, every seed use it)."""
    syn = load_pipeline(bundled_pipeline(NETWORKS["IVD-Net"])).data.synthetic
    assert syn is not None
    n_train, n_test = (4, 2) if quick else (syn.n_train, syn.n_test)
    dataset = out / "data" / "dataset.json"
    if not dataset.is_file():
        generate_phantom(syn.kind, dataset.parent, n_train, n_test, syn.seed, **syn.options)
    return dataset, {"kind": syn.kind, "n_train": n_train, "n_test": n_test, "seed": syn.seed}


def run_one(name: str, seed: int, dataset: Path, out: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """Train one network with one seed, then score its package on the held-out cases (all and dropped)."""
    config = _config(NETWORKS[name], seed, dataset, extra)
    run_dir = out / f"{config.name}_seed{seed}"
    start = time.perf_counter()
    summary = create_trainer(config, run_dir, device="cpu", force=True, progress=False).fit()
    train_seconds = time.perf_counter() - start
    package = load_model_package(run_dir / "model")
    cases = load_decathlon(dataset, section="medseg_test_labels")
    rows = modality_contributions(package, cases, overlap=config.inference.overlap, sw_batch_size=config.inference.sw_batch_size)
    full = [r["dice_mean"] for r in rows if r["dropped"] == "none"]
    return {
        "network": name,
        "registry_name": config.network.name,
        "seed": seed,
        "parameters": sum(p.numel() for p in core_network(package.network).parameters()),
        "epochs": summary["epochs"],
        "iterations": summary["epochs"] * (config.train.iterations_per_epoch or 0),
        "best_epoch": summary["best_epoch"],
        "best_val_dice": summary["best_val_score"],
        "test_dice_mean": float(np.mean(full)),
        "test_dice_std": float(np.std(full)),
        "test_dice_per_case": full,
        "dropped": contribution_table(rows),
        "train_seconds": round(train_seconds, 1),
    }


def markdown(results: list[dict[str, Any]]) -> str:
    """Per-run table, per-network summary over seeds, and the per-modality contribution table."""
    lines = [
        "| network | seed | parameters | best val Dice (epoch) | test Dice (mean ± sd over cases) | train s |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['network']} | {r['seed']} | {r['parameters']:,} | {r['best_val_dice']:.3f} ({r['best_epoch']}) | "
            f"{r['test_dice_mean']:.3f} ± {r['test_dice_std']:.3f} | {r['train_seconds']:.0f} |"
        )
    lines += ["", "| network | seeds | test Dice, mean over seeds | per seed |", "|---|---|---|---|"]
    for name in NETWORKS:
        mine = [r for r in results if r["network"] == name]
        if mine:
            per_seed = ", ".join(f"{r['test_dice_mean']:.3f}" for r in mine)
            lines.append(f"| {name} | {len(mine)} | {np.mean([r['test_dice_mean'] for r in mine]):.3f} | {per_seed} |")
    conditions = [d["dropped"] for d in results[0]["dropped"]] if results else []
    lines += ["", "| network | " + " | ".join(f"without {c}" if c != "none" else "all four" for c in conditions) + " |",
              "|---|" + "---|" * len(conditions)]
    for name in NETWORKS:
        mine = [r for r in results if r["network"] == name]
        if mine:
            cells = []
            for i, c in enumerate(conditions):
                dice = np.mean([r["dropped"][i]["dice"] for r in mine])
                change = np.mean([r["dropped"][i]["change"] for r in mine])
                cells.append(f"{dice:.3f}" if c == "none" else f"{dice:.3f} ({change:+.3f})")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=None, help="override train.epochs of both pipelines")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for IVD-Net's small convolutions)")
    parser.add_argument("--out", type=Path, default=Path("runs/ivd_fusion"))
    parser.add_argument("--quick", action="store_true", help="tiny smoke test (2 epochs x 3 iterations, 4 + 2 cases)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    extra: dict[str, Any] = dict(QUICK) if args.quick else {}
    if args.epochs is not None:
        extra["train.epochs"] = args.epochs
    args.out.mkdir(parents=True, exist_ok=True)
    dataset, data = _dataset(args.out, args.quick)
    results = []
    for seed in args.seeds:
        for name in NETWORKS:
            print(f"training {name}, seed {seed} ...", file=sys.stderr, flush=True)
            results.append(run_one(name, seed, dataset, args.out, extra))
    table = markdown(results)
    print(table)
    report = {
        "command": " ".join(["python", "pipelines/experiments/ivd_fusion.py", *(argv if argv is not None else sys.argv[1:])]),
        "data": data,
        "pipelines": {k: f"pipelines/{v}.yaml" for k, v in NETWORKS.items()},
        "overrides": extra,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.platform(),
        "results": results,
        "markdown": table,
    }
    (args.out / "results.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
