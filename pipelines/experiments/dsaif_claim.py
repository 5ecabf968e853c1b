"""Claim experiment: DSAIF vs labelled-only and vs mutual training with unfiltered or noise views, 10% labels.

Claim (Gu et al., MedIA 2024, in direction): at 10% labels, mutual training on Max-tree / Min-tree filtered
views (DSAIF) beats (a) training on the labelled cases only and (b) the same mutual training with
unfiltered (``plain``) or noise-perturbed views.

Protocol: one atrium phantom dataset (``medseg.data.atrium_phantom``: left-atrium-like MRI where same-intensity
distractors make shape matter) is generated once. For every seed, ``pipelines/semisup_dsaif_phantom.yaml``
runs through ``medseg``'s semi-supervised trainer four times, changing only ``semi_supervised.perturbation``:
``none`` (both networks on the labelled cases only), ``plain``, ``noise``, ``dsaif``. Everything else is shared:
the seed's validation split and labelled subset (10% of the training pool), networks, initialisation,
iterations, optimiser, ramp-up, gamma and view probabilities (the perturbations even share their random
draws). Each run exports the better network (best validation Dice of each) as a model package, which the
ordinary :class:`~medseg.inference.predictor.Predictor` runs on the held-out test cases (input geometry
restored); Dice is computed there against the test labels.

Usage (prints a markdown table, writes results.json and table.md in --out)::

    python pipelines/experiments/semisup_dsaif.py --out runs/semisup_dsaif_claim --seeds 0 1 2
    python pipelines/experiments/semisup_dsaif.py --quick   # a smoke test of the whole path (a minute)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.config import load_pipeline
from medseg.data.layouts import load_decathlon
from medseg.data.registry import generate_phantom
from medseg.model.package import load_model_package
from medseg.engine.variants import create_trainer
from medseg.inference.predictor import Predictor
from medseg.io.image_io import read_image
from medseg.metrics.dice import dice

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "pipelines" / "semisup_dsaif_phantom.yaml"
METHODS = {
    "none": "labelled only",
    "plain": "mutual, unfiltered views",
    "noise": "mutual, noise views",
    "dsaif": "DSAIF (Max/Min-tree views)",
    "dsaif_volume": "DSAIF, volume-scope filter (cached)",
}
DEFAULT_METHODS = ["none", "plain", "noise", "dsaif"]
#: pipeline overrides per method (everything else is shared)
METHOD_OVERRIDES: dict[str, dict[str, Any]] = {
    "dsaif_volume": {"semi_supervised.perturbation": "dsaif", "semi_supervised.dsaif.scope": "volume"},
}
QUICK = {"train.epochs": 2, "train.iterations_per_epoch": 3, "train.val_every": 2, "data.synthetic.n_train": 12, "data.synthetic.n_test": 2}


def test_dice(model: Path, test_cases: list[dict[str, Any]]) -> list[float]:
    """Foreground Dice of the package's prediction on each test case (in the case's own geometry)."""
    predictor = Predictor(load_model_package(model), torch.device("cpu"))
    scores = []
    for case in test_cases:
        pred = predictor.predict_files(case["image"]).labels
        ref, _ = read_image(case["label"], "label")
        scores.append(dice(pred, ref, [1])[1])
    return scores


def run_one(out: Path, data: Path, method: str, seed: int, overrides: dict[str, Any], test_cases: list[dict[str, Any]]) -> dict[str, Any]:
    run_dir = out / f"{method}_seed{seed}"
    result_file = run_dir / "result.json"
    if result_file.is_file():  # finished earlier: the experiment can be resumed run by run
        return json.loads(result_file.read_text())
    config = load_pipeline(
        PIPELINE,
        {
            **overrides, "data.synthetic": None, "data.dataset": str(data.resolve()), "seed": seed,
            "semi_supervised.perturbation": method, **METHOD_OVERRIDES.get(method, {}),
        },
    )
    t0 = time.perf_counter()
    trainer = create_trainer(config, run_dir, device="cpu", progress=False, force=True)
    summary = trainer.fit()
    seconds = time.perf_counter() - t0
    info = load_model_package(Path(summary["model"])).manifest.training["semi_supervised"]
    scores = test_dice(Path(summary["model"]), test_cases)
    params = sum(p.numel() for p in trainer.networks["net1"].parameters())
    result = {
        "method": method,
        "seed": seed,
        "test_dice_mean": float(np.mean(scores)),
        "test_dice": scores,
        "val_best": {k: v["val_score"] for k, v in info["best_per_network"].items()},
        "exported": info["exported"],
        "iterations": info["iterations"],
        "labelled_cases": len(info["labelled_cases"]),
        "unlabelled_cases": len(info["unlabelled_cases"]),
        "params_per_network": params,
        "train_seconds": round(seconds, 1),
    }
    result_file.write_text(json.dumps(result, indent=2) + "\n")
    return result


def table(results: list[dict[str, Any]], seeds: list[int]) -> str:
    lines = [
        "| method | " + " | ".join(f"test Dice seed {s}" for s in seeds) + " | mean ± sd | best val Dice (net1 / net2) | train s |",
        "|---|" + "---|" * len(seeds) + "---|---|---|",
    ]
    for method, title in METHODS.items():
        rows = {r["seed"]: r for r in results if r["method"] == method}
        if not rows:
            continue
        means = [rows[s]["test_dice_mean"] for s in seeds if s in rows]
        cells = [f"{rows[s]['test_dice_mean']:.3f}" if s in rows else "" for s in seeds]
        vals = " ; ".join(f"{rows[s]['val_best']['net1']:.3f} / {rows[s]['val_best']['net2']:.3f}" for s in seeds if s in rows)
        secs = np.mean([rows[s]["train_seconds"] for s in seeds if s in rows])
        sd = f" ± {np.std(means, ddof=1):.3f}" if len(means) > 1 else ""
        lines.append(f"| {title} (`{method}`) | " + " | ".join(cells) + f" | {np.mean(means):.3f}{sd} | {vals} | {secs:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/semisup_dsaif_claim"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(METHODS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny networks: 1 is fastest)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke test of the whole path")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra pipeline overrides (YAML values)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import yaml

    overrides: dict[str, Any] = dict(QUICK) if args.quick else {}
    overrides.update({k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)})
    base = load_pipeline(PIPELINE, overrides)
    syn = base.data.synthetic
    assert syn is not None
    data = args.out / "data"
    if not (data / "dataset.json").is_file():
        generate_phantom(syn.kind, data, syn.n_train, syn.n_test, syn.seed, **syn.options)
    test_cases = load_decathlon(data / "dataset.json", section="medseg_test_labels")
    results = []
    for seed in args.seeds:
        for method in args.methods:
            result = run_one(args.out, data, method, seed, overrides, test_cases)
            results.append(result)
            print(f"{method} seed {seed}: test Dice {result['test_dice_mean']:.3f} ({result['train_seconds']:.0f} s)", flush=True)
    text = table(results, args.seeds)
    first = max(results, key=lambda r: r["unlabelled_cases"])
    text += (
        f"\n\n{syn.n_train} generated training cases (per seed: {first['labelled_cases']} labelled, {first['unlabelled_cases']} unlabelled"
        f" used by the mutual runs, the rest validation), {len(test_cases)} test cases; {first['iterations']} iterations per run;"
        f" {first['params_per_network']} parameters per network; seeds {args.seeds}."
    )
    print(text)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "table.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
