"""Claim experiment: H-DenseUNet's hybrid (2D + 3D + HFF) vs the 2D DenseUNet alone, same training budget.

Li et al. (TMI 2018) report that the hybrid beats the 2D DenseUNet on tumour Dice. On the liver phantom,
with the recipe of ``pipelines/liver_tumor_hdenseunet_phantom.yaml`` (tiny widths), for every seed:

1. ``dense2d``: the 2D DenseUNet trains ``--pretrain`` optimiser steps (8 axial 2.5D slices per step);
2. hybrid arm: ``hybrid_3d`` starts from it (``init_from: net2d``, 2D part frozen) and trains the first half of
   ``--extra`` steps, ``hybrid`` continues end to end for the second half (the code's two hybrid stages), one
   chunk of 8 slices per step (loss HFF + 0.5 x 2D);
3. 2D arm: the same ``dense2d`` run resumed for the same ``--extra`` steps (constant learning rate and exact
   resume make this the 2D network trained ``pretrain + extra`` steps straight).

Both arms see the same number of steps and of labelled slices per step, and share the localiser (trained
once) and the data. Each arm's model package predicts the held-out cases through the full cascade
(localiser box, crop, paste back); liver (labels 1 + 2) and tumour (label 2) Dice per case and global
Dice are reported for the argmax and for the code's thresholds (liver 0.5, tumour 0.9), both with the
code's structural post-processing. A diagnostic third row scores the hybrid's own 2D branch (its ``net2d``
after hybrid training, run alone through the 2D package): the difference to the hybrid is what 3D + HFF add.
Prints a markdown table; writes ``OUT/results.json`` and ``OUT/results.md``.

Usage:
    OMP_NUM_THREADS=1 python pipelines/experiments/hdenseunet_claim.py --out runs/hdenseunet_claim
    OMP_NUM_THREADS=1 python pipelines/experiments/hdenseunet_claim.py --out runs/hdenseunet_claim --score-only  # re-score: OUT/rescored.{json,md}
    python pipelines/experiments/hdenseunet_claim.py --out /tmp/claim --seeds 0 --pretrain 20 --extra 10 --n-train 3 --n-test 1
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from medseg.config import bundled_pipeline
from medseg.model.package import ModelPackage, core_network, load_model_package
from medseg.config.stages import load_stages
from medseg.engine.stages import run_stages
from medseg.engine.variants import create_trainer
from medseg.model.heads import create_head
from medseg.inference.predictor import Predictor
from medseg.io import read_image
from medseg.metrics.regions import PooledCounts, evaluate_case, parse_regions

ITERATIONS = 10  # optimiser steps per epoch (train.iterations_per_epoch)
BRANCH = "(hybrid's 2D branch)"
OUTPUTS = {"argmax": {"kind": "liver_tumor", "thresholds": False}, "code thresholds": {"kind": "liver_tumor"}}


def recipe(args: argparse.Namespace, seed: int, localiser: Path | None, dataset: Path | None) -> dict[str, Any]:
    """The phantom recipe with this experiment's data, budget and seed (no validation: the last weights count)."""
    config = yaml.safe_load(bundled_pipeline("liver_tumor_hdenseunet_phantom").read_text())
    config["seed"] = seed
    config["data"]["val_fraction"] = 0.0
    if dataset is None:
        config["data"]["synthetic"].update(n_train=args.n_train, n_test=args.n_test, seed=args.data_seed)
    else:
        del config["data"]["synthetic"]
        config["data"]["dataset"] = str(dataset)
    stages = {s["name"]: s for s in config["stages"]}
    stages["dense2d"]["train"].update(epochs=args.pretrain, iterations_per_epoch=ITERATIONS)
    stages["hybrid_3d"]["train"].update(epochs=args.extra // 2, iterations_per_epoch=ITERATIONS)
    stages["hybrid"]["train"].update(epochs=args.extra - args.extra // 2, iterations_per_epoch=ITERATIONS)
    if localiser is not None:
        for name in ("dense2d", "hybrid_3d", "hybrid"):
            stages[name]["roi"]["localiser"] = str(localiser)
        config["stages"] = [stages["dense2d"], stages["hybrid_3d"], stages["hybrid"]]
    return config


def write(config: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def hybrid_2d_branch(hybrid_dir: Path, dense2d_dir: Path) -> ModelPackage:
    """The 2D package with the weights of the hybrid's ``net2d`` (diagnostic: what did fusion add?)."""
    package = load_model_package(dense2d_dir)
    core_network(package.network).load_state_dict(load_model_package(hybrid_dir).network.net2d.state_dict())
    return package


def score(package: ModelPackage, cases: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """LiTS Dice per case (mean) and global for each output rule, through the package's cascade."""
    predictor = Predictor(package, torch.device("cpu"))
    regions = parse_regions("lits")
    pooled = {name: PooledCounts() for name in OUTPUTS}
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in OUTPUTS}
    for case in cases:
        image, geometry = predictor.load(case["image"])
        reference, _ = read_image(case["label"], "label")
        probs, _, _ = predictor.input_grid_probabilities(image, geometry)
        for name, output in OUTPUTS.items():
            labels = create_head(output, package.manifest.labels).to_labels(probs[None])[0].numpy()
            rows[name] += evaluate_case(labels, reference, geometry.spacing, regions=regions, case=case["case"], pooled=pooled[name])
    out = {}
    for name in OUTPUTS:
        pooled_dice = {r["label"]: r["dice"] for r in pooled[name].rows()}
        for region in regions:
            per_case = [r["dice"] for r in rows[name] if r["label"] == region]
            out.setdefault(name, {})[f"{region}_per_case"] = float(np.mean(per_case))
            out[name][f"{region}_global"] = pooled_dice[region]
    return out


def score_arms(run_dir: Path, seed: int, test_cases: list[dict[str, Any]], seconds: dict[str, float]) -> list[dict[str, Any]]:
    """Score the three packages of one seed's trained run (2D arm, hybrid, hybrid's 2D branch)."""
    arms = (
        ("2D DenseUNet", load_model_package(run_dir / "dense2d_long" / "model")),
        ("H-DenseUNet", load_model_package(run_dir / "hybrid" / "model")),
        (BRANCH, hybrid_2d_branch(run_dir / "hybrid" / "model", run_dir / "dense2d" / "model")),
    )
    results = []
    for arm, package in arms:
        params = sum(p.numel() for p in package.network.parameters())
        results.append({"arm": arm, "seed": seed, "train_seconds": round(seconds[arm], 1), "parameters": params, **score(package, test_cases)})
        print(json.dumps(results[-1]), flush=True)
    return results


def score_trained(run_dir: Path, seed: int, test_cases: list[dict[str, Any]], previous: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``--score-only``: score an earlier run's packages again; training times come from its results.json."""
    times = {r["arm"]: r["train_seconds"] for r in previous if r["seed"] == seed}
    times.setdefault(BRANCH, times["H-DenseUNet"])
    return score_arms(run_dir, seed, test_cases, times)


def stem(args: argparse.Namespace) -> str:
    """Output file name: ``--score-only`` keeps the training run's results and writes ``rescored.*`` beside them."""
    return "rescored" if args.score_only else "results"


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = Path(args.out)
    torch.set_num_threads(args.threads)
    previous = json.loads((out / "results.json").read_text())["results"] if args.score_only else []
    # localiser and data once, shared by every seed and arm
    shared = out / "shared.yaml" if args.score_only else write(recipe(args, args.seeds[0], None, None), out / "shared.yaml")
    if not (out / "shared" / "localiser" / "model" / "medseg.json").is_file():
        run_stages(shared, out / "shared", only="localiser", device="cpu", progress=False, force=True)
    dataset = (out / "shared" / "data" / "dataset.json").resolve()
    meta = json.loads(dataset.read_text())
    test_cases = [{"case": Path(t["image"]).name.split(".")[0], "image": [str(dataset.parent / t["image"])], "label": str(dataset.parent / t["label"])}
                  for t in meta["medseg_test_labels"]]
    localiser = (out / "shared" / "localiser" / "model").resolve()
    results = []
    for seed in args.seeds:
        run_dir = out / f"seed{seed}"
        if args.score_only:
            results += score_trained(run_dir, seed, test_cases, previous)
            continue
        path = write(recipe(args, seed, localiser, dataset), run_dir / "recipe.yaml")
        t0 = time.perf_counter()
        run_stages(path, run_dir, only="dense2d", device="cpu", progress=False, force=True)
        pretrain_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_stages(path, run_dir, only="hybrid_3d", device="cpu", progress=False, force=True)
        run_stages(path, run_dir, only="hybrid", device="cpu", progress=False, force=True)
        hybrid_s = time.perf_counter() - t0
        # the 2D arm: the same 2D run, resumed for the same number of extra steps
        shutil.rmtree(run_dir / "dense2d_long", ignore_errors=True)
        shutil.copytree(run_dir / "dense2d", run_dir / "dense2d_long")
        config = load_stages(path, run_dir)[0].config
        t0 = time.perf_counter()
        create_trainer(config, run_dir / "dense2d_long", device="cpu", resume=True, epochs=args.pretrain + args.extra, progress=False).fit()
        long_s = time.perf_counter() - t0
        seconds = {"2D DenseUNet": pretrain_s + long_s, "H-DenseUNet": pretrain_s + hybrid_s, BRANCH: pretrain_s + hybrid_s}
        results += score_arms(run_dir, seed, test_cases, seconds)
    (out / f"{stem(args)}.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return results


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"Liver phantom: {args.n_train} training cases, {args.n_test} held-out test cases (data seed {args.data_seed}); "
        f"{args.pretrain * ITERATIONS} 2D pre-training steps + {args.extra * ITERATIONS} steps per arm; seeds {args.seeds}.",
        "",
        "| output | arm | seed | tumour Dice per case | tumour Dice global | liver Dice per case | liver Dice global | train s | parameters |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for output in OUTPUTS:
        for arm in ("2D DenseUNet", "H-DenseUNet", BRANCH):
            subset = [r for r in results if r["arm"] == arm]
            for r in subset + [None]:
                if r is None:
                    m = {k: float(np.mean([s[output][k] for s in subset])) for k in subset[0][output]}
                    seconds = float(np.mean([s["train_seconds"] for s in subset]))
                    row = ("**mean**", m, f"{seconds:.0f}", "")
                else:
                    row = (str(r["seed"]), r[output], f"{r['train_seconds']:.0f}", f"{r['parameters']:,}")
                seed, m, seconds, params = row
                lines.append(
                    f"| {output} | {arm} | {seed} | {m['tumour_per_case']:.3f} | {m['tumour_global']:.3f} | "
                    f"{m['liver_per_case']:.3f} | {m['liver_global']:.3f} | {seconds} | {params} |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/hdenseunet_claim")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--pretrain", type=int, default=20, help="2D pre-training epochs (10 steps each)")
    parser.add_argument("--extra", type=int, default=20, help="epochs of each arm after pre-training (10 steps each)")
    parser.add_argument("--n-train", type=int, default=8)
    parser.add_argument("--n-test", type=int, default=4)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--score-only", action="store_true", help="no training: score the packages an earlier run left in --out (same --seeds/--pretrain/--extra)")
    args = parser.parse_args()
    start = time.perf_counter()
    results = run(args)
    markdown = table(results, args) + f"\n\nTotal time {time.perf_counter() - start:.0f} s.\n"
    (Path(args.out) / f"{stem(args)}.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
