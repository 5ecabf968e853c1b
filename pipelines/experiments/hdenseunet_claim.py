"""Claim experiment: H-DenseUNet's hybrid (2D + 3D + HFF) vs the 2D DenseUNet alone, same training budget.

The design, written before any run, is ``pipelines/experiments/hdenseunet_design.md``; the constants below
(phantom, budgets, seeds, gate, margin) are the design's. In short, per seed:

1. ``dense2d``: the 2D DenseUNet (2.5D, three-slice stacks) trains ``pretrain`` steps;
2. ``H-DenseUNet`` arm: ``hybrid_3d`` starts from it (2D part frozen) for half of ``extra`` steps, then
   ``hybrid`` end to end for the other half (the code's two hybrid stages; the code's guidance pairing: 2D
   logits x 250 next to the CT in HU - 48), one batch of 8-slice chunks per step;
3. ``2D DenseUNet`` arm: the same ``dense2d`` run resumed for the same ``extra`` steps (constant rate and
   exact resume: the 2D network trained ``pretrain + extra`` steps straight), as many slices per step.

Data: liver phantoms with the inter-slice option (round tumours; tubular vessel sections along z that look
like tumours in one axial slice). One localiser (trained once) and one dataset serve every run. Each arm's
model package predicts the held-out cases through the package's own predictor (localiser box, crop, window
engine, paste back, the package's post-processing), so a change of the hybrid's inference reaches this
experiment without editing it. Primary score: tumour Dice per test case (LiTS regions) with the code's output
rule (liver p >= 0.5, tumour p >= 0.9; the argmax is a diagnostic). Diagnostic arm: the hybrid's own 2D
branch run alone. The verdict is claims.py's rule.

Usage (see the design for the timings):
    python pipelines/experiments/hdenseunet_claim.py --out runs/hdenseunet_claim --processes 2       # CPU
    python pipelines/experiments/hdenseunet_claim.py --out runs/hdenseunet_large --device cuda --budget large
    python pipelines/experiments/hdenseunet_claim.py --out /tmp/hdu_quick --quick                    # ~1 min
    python pipelines/experiments/hdenseunet_claim.py --out runs/hdu_pilot --seeds 100 --baseline-only  # sizing
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import claims  # noqa: E402 - the shared statistics beside this script

from medseg.config import bundled_pipeline  # noqa: E402
from medseg.config.stages import load_stages  # noqa: E402
from medseg.engine.stages import run_stages  # noqa: E402
from medseg.engine.variants import create_trainer  # noqa: E402
from medseg.inference.predictor import Predictor  # noqa: E402
from medseg.io import read_image  # noqa: E402
from medseg.metrics.regions import evaluate_case, parse_regions  # noqa: E402
from medseg.model.heads import create_head  # noqa: E402
from medseg.model.package import ModelPackage, core_network, load_model_package  # noqa: E402

BASELINE, METHOD, BRANCH = "2D DenseUNet", "H-DenseUNet", "hybrid's 2D branch"
SEEDS = (0, 1, 2, 3, 4)
LARGE_SEEDS = (0, 1, 2)
GATE = 0.5  # the baseline's tumour Dice per case, mean over seeds and test cases
MARGIN = 0.05  # "not supported" when the interval of the paired difference lies below +0.05
DATA_SEED = 0
#: liver_phantom's inter-slice option (medseg/data/liver_phantom.py): the same data for both arms
PHANTOM = {"lesion_shape": "sphere", "lesions": [3, 5], "lesion_radius_mm": [7.0, 11.0], "lesion_contrast_hu": [-70.0, -40.0],
           "mimics": [1, 1], "mimic_length_mm": [20.0, 32.0], "spacing_z_mm": [2.5, 3.5]}
#: the code's output rule (test.py): liver p >= 0.5, tumour p >= 0.9, largest liver component, tumour inside it
OUTPUT = {"kind": "liver_tumor", "thresholds": True}
QUICK_PHANTOM = {**PHANTOM, "field_of_view_mm": [200.0, 160.0, 150.0], "spacing_xy_mm": [3.0, 3.0], "spacing_z_mm": [3.0, 3.0]}


@dataclass(frozen=True)
class Budget:
    """Optimiser steps and sizes of one run; ``batch_2d`` slices per 2D step = ``chunks`` x 8 slices per hybrid step."""

    pretrain: int  # 2D steps before the arms part
    extra: int  # steps of each arm after that (hybrid: half frozen 2D, half end to end)
    batch_2d: int = 8
    chunks: int = 1
    iterations: int = 10  # steps per epoch
    n_train: int = 10
    n_test: int = 6
    localiser_epochs: int = 60


BUDGETS = {
    "cpu": Budget(pretrain=600, extra=300),
    "large": Budget(pretrain=1000, extra=1000, batch_2d=16, chunks=2, iterations=50),
    "quick": Budget(pretrain=4, extra=4, iterations=2, n_train=2, n_test=1, localiser_epochs=1),
}

DESIGN = claims.Design(
    method="H-DenseUNet",
    claim="The hybrid (2D + 3D DenseUNet + HFF) beats the 2D DenseUNet alone on tumour Dice at the same training budget.",
    paper="LiTS test tumour Dice per case 72.2 (METHODS.md: unverified from the paper body); the ablation puts the hybrid above its 2D DenseUNet",
    metric="tumour Dice per test case (LiTS regions; the code's output rule: tumour p >= 0.9 inside the post-processed liver)",
    baseline=BASELINE,
    treatment=METHOD,
    gate=f"{BASELINE} tumour Dice per case >= {GATE}",
    margin=MARGIN,
    design_file="pipelines/experiments/hdenseunet_design.md",
    command="python pipelines/experiments/hdenseunet_claim.py --out runs/hdenseunet_claim --processes 2",
)


def recipe(budget: Budget, seed: int, quick: bool, localiser: Path | None, dataset: Path | None) -> dict[str, Any]:
    """The phantom pipeline with this experiment's data, budget, seed and guidance (no validation: last weights)."""
    config = yaml.safe_load(bundled_pipeline("liver_tumor_hdenseunet_phantom").read_text())
    config["seed"] = seed
    config["data"]["val_fraction"] = 0.0
    if dataset is None:
        config["data"]["synthetic"] = {"kind": "liver_phantom", "n_train": budget.n_train, "n_test": budget.n_test,
                                       "seed": DATA_SEED, "options": QUICK_PHANTOM if quick else PHANTOM}
    else:
        del config["data"]["synthetic"]
        config["data"]["dataset"] = str(dataset)
    stages = {s["name"]: s for s in config["stages"]}
    for stage in stages.values():
        stage["train"]["threads"] = 1  # one thread per run (claims.run_parallel); fixed, so runs reproduce
    stages["localiser"]["train"]["epochs"] = budget.localiser_epochs
    it = budget.iterations
    stages["dense2d"]["train"].update(epochs=budget.pretrain // it, iterations_per_epoch=it, batch_size=budget.batch_2d)
    for name, epochs in (("hybrid_3d", budget.extra // 2 // it), ("hybrid", (budget.extra - budget.extra // 2) // it)):
        stages[name]["train"].update(epochs=epochs, iterations_per_epoch=it, batch_size=budget.chunks)
        stages[name]["network"]["kwargs"]["guidance"] = "code"  # the code's pairing: 2D logits x 250 next to HU - 48
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
    """The 2D package with the weights of the hybrid's ``net2d`` (diagnostic: what do 3D + HFF add?)."""
    package = load_model_package(dense2d_dir)
    core_network(package.network).load_state_dict(load_model_package(hybrid_dir).network.net2d.state_dict())
    return package


def score(package: ModelPackage, arm: str, seed: int, cases: list[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    """One row per test case through the package's predictor (cascade, window engine, paste back): ``score`` =
    tumour Dice with the code's output rule (liver p >= 0.5, tumour p >= 0.9, structural post-processing),
    ``liver`` likewise; ``tumour_argmax`` = tumour Dice of the argmax with the same post-processing (diagnostic)."""
    predictor = Predictor(package, torch.device(device))
    regions = parse_regions("lits")
    heads = {"code": create_head(OUTPUT, package.manifest.labels), "argmax": create_head({**OUTPUT, "thresholds": False}, package.manifest.labels)}
    rows = []
    for case in cases:
        image, geometry = predictor.load(case["image"])
        reference, _ = read_image(case["label"], "label")
        probs, _, _ = predictor.input_grid_probabilities(image, geometry)
        dice = {}
        for name, head in heads.items():
            labels = head.to_labels(probs[None])[0].numpy()
            dice[name] = {r["label"]: r["dice"] for r in evaluate_case(labels, reference, geometry.spacing, regions=regions, case=case["case"])}
        rows.append({"arm": arm, "seed": seed, "case": case["case"], "score": dice["code"]["tumour"],
                     "liver": dice["code"]["liver"], "tumour_argmax": dice["argmax"]["tumour"]})
    return rows


def test_cases(out: Path) -> list[dict[str, Any]]:
    dataset = (out / "shared" / "data" / "dataset.json").resolve()
    meta = json.loads(dataset.read_text())
    return [{"case": Path(t["image"]).name.split(".")[0], "image": [str(dataset.parent / t["image"])], "label": str(dataset.parent / t["label"])}
            for t in meta["medseg_test_labels"]]


def seed_recipe(out: Path, budget: Budget, seed: int, quick: bool) -> Path:
    localiser = (out / "shared" / "localiser" / "model").resolve()
    return write(recipe(budget, seed, quick, localiser, (out / "shared" / "data" / "dataset.json").resolve()), out / f"seed{seed}" / "recipe.yaml")


def pretrain(out_dir: str, budget_name: str, seed: int, quick: bool, device: str) -> float:
    """Stage ``dense2d`` of one seed; returns its wall seconds."""
    out = Path(out_dir)
    path = seed_recipe(out, BUDGETS[budget_name], seed, quick)
    start = time.perf_counter()
    run_stages(path, out / f"seed{seed}", only="dense2d", device=device, progress=False, force=True)
    return time.perf_counter() - start


def train_arm(out_dir: str, budget_name: str, seed: int, arm: str, device: str) -> dict[str, Any]:
    """One arm of one seed after the shared pre-training, scored on the test cases: rows and seconds."""
    out, budget = Path(out_dir), BUDGETS[budget_name]
    run_dir = out / f"seed{seed}"
    path = run_dir / "recipe.yaml"
    start = time.perf_counter()
    if arm == BASELINE:
        shutil.rmtree(run_dir / "dense2d_long", ignore_errors=True)
        shutil.copytree(run_dir / "dense2d", run_dir / "dense2d_long")
        config = load_stages(path, run_dir)[0].config
        epochs = (budget.pretrain + budget.extra) // budget.iterations
        create_trainer(config, run_dir / "dense2d_long", device=device, resume=True, epochs=epochs, progress=False).fit()
        seconds = time.perf_counter() - start
        packages = [(BASELINE, load_model_package(run_dir / "dense2d_long" / "model"))]
    else:
        run_stages(path, run_dir, only="hybrid_3d", device=device, progress=False, force=True)
        run_stages(path, run_dir, only="hybrid", device=device, progress=False, force=True)
        seconds = time.perf_counter() - start
        packages = [(METHOD, load_model_package(run_dir / "hybrid" / "model")),
                    (BRANCH, hybrid_2d_branch(run_dir / "hybrid" / "model", run_dir / "dense2d" / "model"))]
    rows = []
    for name, package in packages:
        rows += score(package, name, seed, test_cases(out), device)
    return {"arm": arm, "seed": seed, "train_seconds": round(seconds, 1), "score_seconds": round(time.perf_counter() - start - seconds, 1),
            "parameters": sum(p.numel() for p in packages[0][1].network.parameters()), "rows": rows}


def diagnostics(rows: list[dict[str, Any]]) -> str:
    """Mean tumour Dice (code rule and argmax) and liver Dice per arm, over seeds and cases."""
    lines = ["| arm | tumour Dice (code rule, primary) | tumour Dice, argmax | liver Dice |", "|---|---|---|---|"]
    for arm in (BASELINE, METHOD, BRANCH):
        mine = [r for r in rows if r["arm"] == arm]
        if mine:
            lines.append(f"| {arm} | {np.mean([r['score'] for r in mine]):.3f} | {np.mean([r['tumour_argmax'] for r in mine]):.3f} | "
                         f"{np.mean([r['liver'] for r in mine]):.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", default="runs/hdenseunet_claim")
    parser.add_argument("--seeds", type=int, nargs="+", help=f"default: the design's {list(SEEDS)} ({list(LARGE_SEEDS)} with --budget large)")
    parser.add_argument("--processes", type=int, default=1, help="parallel runs of one thread each")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--budget", choices=("cpu", "large"), default="cpu", help="large: the secondary GPU run of the design")
    parser.add_argument("--quick", action="store_true", help="tiny data and steps: checks the script end to end, decides nothing")
    parser.add_argument("--baseline-only", action="store_true", help="pilot: the 2D arm alone (sizing the budget; no verdict)")
    args = parser.parse_args(argv)
    budget_name = "quick" if args.quick else args.budget
    budget = BUDGETS[budget_name]
    seeds = args.seeds or list(SEEDS[:1] if args.quick else LARGE_SEEDS if args.budget == "large" else SEEDS)
    out = Path(args.out)
    start = time.perf_counter()
    torch.set_num_threads(1)
    # localiser and data once, shared by every seed and arm
    shared = write(recipe(budget, seeds[0], args.quick, None, None), out / "shared.yaml")
    if not (out / "shared" / "localiser" / "model" / "medseg.json").is_file():
        run_stages(shared, out / "shared", only="localiser", device=args.device, progress=False, force=True)
    shared_s = time.perf_counter() - start
    pre_s = claims.run_parallel(pretrain, [(str(out), budget_name, s, args.quick, args.device) for s in seeds], args.processes)
    arms = [BASELINE] if args.baseline_only else [BASELINE, METHOD]
    tasks = [(str(out), budget_name, s, arm, args.device) for s in seeds for arm in arms]
    runs = claims.run_parallel(train_arm, tasks, args.processes)
    rows = [row for run in runs for row in run["rows"]]
    timings = {"shared_s": round(shared_s, 1), "pretrain_s": [round(s, 1) for s in pre_s],
               "runs": [{k: v for k, v in run.items() if k != "rows"} for run in runs], "total_s": round(time.perf_counter() - start, 1)}
    extra = {"budget": {"name": budget_name, **asdict(budget)}, "phantom": QUICK_PHANTOM if args.quick else PHANTOM,
             "device": args.device, "processes": args.processes, "timings": timings}
    baseline = float(np.mean([r["score"] for r in rows if r["arm"] == BASELINE]))
    if args.baseline_only:
        out.mkdir(parents=True, exist_ok=True)
        (out / "pilot.json").write_text(json.dumps({"rows": rows, **extra}, indent=2))
        text = f"Pilot ({BASELINE} only): tumour Dice per case {baseline:.3f} (gate {GATE})\n\n{diagnostics(rows)}\n\n{json.dumps(timings)}"
    else:
        summary = claims.summarise(rows, DESIGN, baseline, baseline >= GATE)
        text = claims.write_results(out, DESIGN, rows, summary, extra)
        text += f"\n\nDiagnostics (means over seeds and cases):\n\n{diagnostics(rows)}\n\nBudget {budget_name}: {asdict(budget)}; " \
                f"total {timings['total_s']:.0f} s on {args.device} with {args.processes} process(es)."
        (out / "results.md").write_text(text + "\n")
    print(text)
    return text


if __name__ == "__main__":
    main()
