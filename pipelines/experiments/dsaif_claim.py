"""Claim experiment (issue 17): with 10% of the cases labelled, DSAIF beats the same network trained on the
labelled cases only. Design (pre-registered, 2026-12-04): ``pipelines/experiments/dsaif_design.md``.

Data: one atrium phantom dataset (``medseg.data.atrium_phantom`` with ``nuisance: true``: flow voids in the
blood pools and bright spots around the atrium, below the filter's area, stronger bias and noise), generated
once into ``OUT/data`` and shared by every arm and seed. Each run is ``pipelines/semisup_dsaif_phantom.yaml``
through medseg's semi-supervised trainer with only ``semi_supervised.perturbation`` changed per arm:

* ``labelled-only`` (baseline, ``none``): both networks on the labelled cases only;
* ``DSAIF`` (``dsaif``): cross pseudo supervision on Max-/Min-tree filtered views of the unlabelled cases;
* diagnostic arms, not in the verdict nor the budget (``--arms``): ``mutual-plain`` (``plain``: the same mutual
  training on unfiltered views), ``mutual-noise`` (``noise``).

The seed sets the validation split, which 2 of the 21-case pool keep their labels, the initialisation and
the sampling; the arms of one seed share all of them. The exported network (``export: better``) segments the
held-out test cases through the ordinary ``Predictor`` (each case's own geometry); one row per (arm, seed, test
case) holds its foreground Dice. ``claims.summarise`` pairs the arms by seed and case, the gate is the
labelled-only arm's mean test Dice, and the verdict is claims.py's rule with ``MARGIN``.

Usage::

    python pipelines/experiments/dsaif_claim.py --out runs/dsaif_claim --processes 2          # the design
    python pipelines/experiments/dsaif_claim.py --out runs/dsaif_claim --device cuda         # same runs on a GPU
    python pipelines/experiments/dsaif_claim.py --quick --out /tmp/dsaif_quick               # end to end, seconds

Runs finished earlier are reused (``OUT/<arm>_seed<seed>/result.json``): an interrupted experiment resumes.
Writes ``OUT/results.json`` and ``OUT/results.md`` and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from medseg.config import load_pipeline
from medseg.data.layouts import load_decathlon
from medseg.data.registry import generate_phantom
from medseg.engine.variants import create_trainer
from medseg.inference.predictor import Predictor
from medseg.io.image_io import read_image
from medseg.metrics.dice import dice
from medseg.model.package import load_model_package

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))  # spawned workers get this path too, so they import the same claims module
import claims  # noqa: E402  - the shared statistics beside this script

PIPELINE = ROOT / "pipelines" / "semisup_dsaif_phantom.yaml"

# ---- design constants (dsaif_design.md says the same) ----
SEEDS = list(range(10))
BASELINE, TREATMENT = "labelled-only", "DSAIF"
ARMS = {BASELINE: "none", TREATMENT: "dsaif", "mutual-plain": "plain", "mutual-noise": "noise"}
DEFAULT_ARMS = [BASELINE, TREATMENT]
#: the phantom: 24 training cases (3 validation, 10% of the other 21 = 2 labelled, 19 unlabelled), 12 test cases
DATA = {"data.synthetic.n_train": 24, "data.synthetic.n_test": 12, "data.synthetic.options": {"nuisance": True}}
#: the budget: the pipeline's (20 epochs x 25 iterations = 500, batch 2 labelled + 2 unlabelled 40 x 40 slices,
#: UNet 8-64 filters), one torch thread per run
BUDGET: dict[str, Any] = {"train.threads": 1}
MARGIN = 0.02
GATE = (0.5, 0.85)  # the labelled-only arm's mean test Dice must lie in this range
QUICK = {"train.epochs": 1, "train.iterations_per_epoch": 2, "train.val_every": 1,
         "data.synthetic.n_train": 12, "data.synthetic.n_test": 2}
COMMAND = "python pipelines/experiments/dsaif_claim.py --out runs/dsaif_claim --processes 2"


def design() -> claims.Design:
    return claims.Design(
        method="DSAIF",
        claim="with 10% of the cases labelled, DSAIF beats the same network trained on the labelled cases only",
        paper="DSAIF above labelled-only training at 10% labels (LA, Pancreas-NIH; figures unverified, METHODS.md)",
        metric="foreground (atrium) Dice per test case of the exported network",
        baseline=BASELINE,
        treatment=TREATMENT,
        gate=f"labelled-only mean test Dice in [{GATE[0]}, {GATE[1]}]",
        margin=MARGIN,
        design_file="pipelines/experiments/dsaif_design.md",
        command=COMMAND,
    )


def run_one(out: Path, data: Path, arm: str, seed: int, overrides: dict[str, Any], device: str) -> dict[str, Any]:
    """Train one arm with one seed; score its exported package on every test case (resumable)."""
    run_dir = out / f"{arm}_seed{seed}"
    result_file = run_dir / "result.json"
    if result_file.is_file():
        return dict(json.loads(result_file.read_text()))
    config = load_pipeline(PIPELINE, {**overrides, "data.synthetic": None, "data.dataset": str(data.resolve()),
                                      "seed": seed, "semi_supervised.perturbation": ARMS[arm]})
    start = time.perf_counter()
    summary = create_trainer(config, run_dir, device=device, progress=False, force=True).fit()
    seconds = time.perf_counter() - start
    package = load_model_package(Path(summary["model"]))
    info = package.manifest.training["semi_supervised"]
    predictor = Predictor(package, torch.device(device))
    rows = []
    for case in load_decathlon(data / "dataset.json", section="medseg_test_labels"):
        pred = predictor.predict_files(case["image"]).labels
        ref, _ = read_image(case["label"], "label")
        rows.append({"arm": arm, "seed": seed, "case": case["case"], "score": float(dice(pred, ref, [1])[1])})
    result = {
        "arm": arm, "seed": seed, "rows": rows,
        "val_best": {k: v["val_score"] for k, v in info["best_per_network"].items()},
        "exported": info["exported"], "iterations": info["iterations"],
        "labelled_cases": info["labelled_cases"], "unlabelled_cases": len(info["unlabelled_cases"]),
        "train_seconds": round(seconds, 1), "device": device,
    }
    result_file.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/dsaif_claim"))
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help=f"default {SEEDS} ([0] with --quick)")
    parser.add_argument("--arms", nargs="+", default=DEFAULT_ARMS, choices=list(ARMS),
                        help="the verdict needs both default arms; the others are diagnostics")
    parser.add_argument("--processes", type=int, default=1, help="runs in parallel, one torch thread each")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true", help="tiny data and steps: checks the path, not the claim")
    args = parser.parse_args(argv)
    seeds = args.seeds or ([0] if args.quick else SEEDS)
    overrides: dict[str, Any] = {**DATA, **BUDGET, **(QUICK if args.quick else {})}
    syn = load_pipeline(PIPELINE, overrides).data.synthetic
    assert syn is not None
    data = args.out / "data"
    if not (data / "dataset.json").is_file():
        generate_phantom(syn.kind, data, syn.n_train, syn.n_test, syn.seed, **syn.options)
    tasks = [(args.out, data, arm, seed, overrides, args.device) for seed in seeds for arm in args.arms]
    results = claims.run_parallel(run_one, tasks, args.processes)
    for r in results:
        mean = sum(row["score"] for row in r["rows"]) / len(r["rows"])
        print(f"{r['arm']} seed {r['seed']}: test Dice {mean:.3f} ({r['train_seconds']:.0f} s)", flush=True)
    rows = [row for r in results for row in r["rows"]]
    if not {BASELINE, TREATMENT} <= set(args.arms):  # a pilot of one arm: its scores, no verdict
        print(json.dumps({"runs": results}, indent=2))
        return 0
    base = [row["score"] for row in rows if row["arm"] == BASELINE]
    gate_value = sum(base) / len(base)
    summary = claims.summarise(rows, design(), gate_value, GATE[0] <= gate_value <= GATE[1])
    extra = {"runs": [{k: v for k, v in r.items() if k != "rows"} for r in results], "overrides": overrides,
             "quick": args.quick, "device": args.device, "processes": args.processes,
             "diagnostic_rows": [row for row in rows if row["arm"] not in (BASELINE, TREATMENT)]}
    primary = [row for row in rows if row["arm"] in (BASELINE, TREATMENT)]
    text = claims.write_results(args.out, design(), primary, summary, extra)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
