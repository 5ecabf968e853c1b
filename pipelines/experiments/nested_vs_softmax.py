"""Claim experiment: multi-level (nested) head vs softmax head on the same backbone and budget.

Claim (Hu et al., BrainLes 2018, in direction): with everything else equal, the multi-level head beats the softmax
head on the innermost class (ET) and never produces nesting violations (softmax can).

Protocol: one glioma phantom dataset (``medseg.data.glioma_phantom``; ``--n-train`` cases, 25 % of them held out
for validation/checkpoint selection/threshold tuning, ``--n-test`` unseen test cases) is generated once. For every
seed, each head is trained with its pipeline (``pipelines/brats_nested_phantom.yaml``,
``pipelines/brats_softmax_phantom.yaml``; same network except the head, same data, patches, iterations, optimizer
and validation rule) through the ordinary :class:`medseg.engine.trainer.Trainer`, exported as a model package and
run on the test cases by the ordinary :class:`medseg.inference.predictor.Predictor` (input geometry restored).

Each head is scored under named decodings of its probabilities (WT, TC, ET region probabilities: the multi-level
head's sigmoids, or the softmax head's cumulative ``P(level >= k)``):

- ``labels``: the package's own decoding, i.e. what ``medseg predict`` writes (multi-level: ``p_k > 0.5``;
  softmax: argmax). Regions of a label map nest **by construction**: 0 violations is not a finding.
- ``P(level>=k) > 0.5`` (softmax only): one common threshold on the cumulative probabilities; nested by
  construction too.
- ``tuned t_k``: one threshold per region, chosen on the validation cases (grid 0.1..0.9) to maximise that region's
  Dice, as BraTS entries tune ET; the only decoding where violations are possible for the softmax head. The
  multi-level head's ``p_k`` are ordered, so its tuned masks nest whenever ``t_WT <= t_TC <= t_ET``; they can
  violate otherwise, and are counted the same way.

Reported per decoding: mean Dice per region over the test cases (an ET empty in both reference and prediction scores
1, the BraTS convention), ET Dice on the cases that have enhancing tumour, the number of cases without enhancing
tumour where ET was predicted anyway (which the empty policy scores 0), ET HD95, and nesting violations.

Optional third arm (``--heads multilevel,softmax,sigmoid``): independent sigmoid regions (``head: sigmoid``,
output ``regions``), which can violate nesting at any threshold. Optional arm ``multilevel_fixed``: the multi-level
head with its offsets used as given (``offset_init: fixed``, the behaviour before issue 19) instead of centred on
the first training batch's output (``multilevel``, the default).

Usage (prints a markdown table; results.json in --out)::

    python pipelines/experiments/nested_vs_softmax.py --out runs/nested_vs_softmax --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.config import PipelineConfig, load_pipeline
from medseg.data.brats_labels import REGION_NAMES, labels_to_regions
from medseg.data.glioma_phantom import make_glioma_dataset
from medseg.data.layouts import load_decathlon
from medseg.model.package import load_model_package
from medseg.engine.trainer import Trainer
from medseg.inference.predictor import Predictor
from medseg.io.image_io import read_image
from medseg.metrics.brats import nesting_violations, region_counts, region_scores, softmax_region_probabilities
from medseg.metrics.dice import dice_from_counts

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = {"multilevel": "brats_nested_phantom", "softmax": "brats_softmax_phantom", "sigmoid": "brats_nested_phantom",
             "multilevel_fixed": "brats_nested_phantom"}
ARMS = {  # pipeline overrides of the arms that are not a pipeline as it stands
    "sigmoid": {"network.kwargs.head": "sigmoid", "network.kwargs.out_channels": 3, "output.kind": "regions", "name": "brats_sigmoid_phantom"},
    "multilevel_fixed": {"network.kwargs.offset_init": "fixed", "name": "brats_nested_fixed_offsets_phantom"},
}
GRID = np.round(np.arange(0.1, 0.95, 0.1), 2)


def make_config(head: str, seed: int, data: Path, args: argparse.Namespace) -> PipelineConfig:
    overrides: dict[str, Any] = {"seed": seed, "data.synthetic": None, "data.dataset": str(data.resolve())}
    overrides.update(ARMS.get(head, {}))
    if args.epochs:
        overrides["train.epochs"] = args.epochs
    if args.iterations:
        overrides["train.iterations_per_epoch"] = args.iterations
    if args.spacing:
        overrides["preprocess.target_spacing"] = [args.spacing] * 3
    return load_pipeline(ROOT / "pipelines" / f"{PIPELINES[head]}.yaml", overrides)


def region_probabilities(head: str, probabilities: np.ndarray) -> np.ndarray:
    """``(3, *spatial)`` WT/TC/ET probabilities from a prediction's ``(*spatial, P)`` probabilities."""
    channels_first = np.moveaxis(probabilities, -1, 0)
    return softmax_region_probabilities(channels_first, axis=0) if head == "softmax" else channels_first


def predict_cases(package_dir: Path, head: str, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Predict each case through the package: region probabilities, the package's labels, reference regions."""
    predictor = Predictor(load_model_package(package_dir), torch.device("cpu"))
    out = []
    for case in cases:
        result = predictor.predict_files(case["image"], keep_probabilities=True)
        reference, _ = read_image(case["label"], "label")
        out.append(
            {
                "case": case["case"],
                "probs": region_probabilities(head, result.probabilities),
                "labels": result.labels,
                "ref": labels_to_regions(reference, "auto"),
                "spacing": result.geometry.spacing,
            }
        )
    return out


def tune_thresholds(val: list[dict[str, Any]]) -> list[float]:
    """Per-region threshold maximising that region's mean validation Dice (ties: the one closest to 0.5)."""
    order = sorted(GRID, key=lambda t: abs(t - 0.5))
    best = []
    for k in range(len(REGION_NAMES)):
        scores = {t: np.mean([dice_from_counts(region_counts(c["probs"][k : k + 1] > t, c["ref"][k : k + 1]))[0] for c in val]) for t in order}
        best.append(float(max(order, key=lambda t: scores[t])))
    return best


def decodings(head: str, case: dict[str, Any], tuned: list[float]) -> dict[str, np.ndarray]:
    """Named region-mask stacks ``(3, *spatial)`` of one case."""
    t = np.asarray(tuned).reshape(-1, *([1] * (case["probs"].ndim - 1)))
    out = {"labels": labels_to_regions(case["labels"], "auto")}
    if not head.startswith("multilevel"):
        out["P(level>=k) > 0.5" if head == "softmax" else "p_k > 0.5"] = case["probs"] > 0.5
    out["tuned t_k"] = case["probs"] > t
    return out


def score_run(head: str, val: list[dict[str, Any]], test: list[dict[str, Any]]) -> dict[str, Any]:
    """Per decoding: per-case WT/TC/ET Dice and HD95, whether ET is empty in reference/prediction, violations."""
    tuned = tune_thresholds(val)
    per_decoding: dict[str, dict[str, Any]] = {}
    for case in test:
        for name, masks in decodings(head, case, tuned).items():
            scores = region_scores(masks, case["ref"], case["spacing"])
            violations = nesting_violations(masks)
            entry = per_decoding.setdefault(name, {"dice": [], "hd95": [], "et_in_ref": [], "et_in_pred": [], "violations": 0, "violating_cases": 0})
            entry["dice"].append([scores[r]["dice"] for r in REGION_NAMES])
            entry["hd95"].append([scores[r]["hd95"] for r in REGION_NAMES])
            entry["et_in_ref"].append(bool(case["ref"][2].any()))
            entry["et_in_pred"].append(bool(masks[2].any()))
            entry["violations"] += int(sum(violations.per_pair))
            entry["violating_cases"] += int(violations.voxels > 0)
    return {"thresholds": tuned, "decodings": per_decoding}


def _summary(entry: dict[str, Any]) -> dict[str, float]:
    """One run's test means: Dice per region, ET Dice on cases with ET, spurious-ET cases, ET HD95."""
    dice, with_et = np.asarray(entry["dice"]), np.asarray(entry["et_in_ref"])
    return {
        "WT": dice[:, 0].mean(), "TC": dice[:, 1].mean(), "ET": dice[:, 2].mean(),
        "ET_with_et": dice[with_et, 2].mean() if with_et.any() else float("nan"),
        "spurious_et": float(np.sum(np.asarray(entry["et_in_pred"]) & ~with_et)),
        "ET_hd95": float(np.mean(np.asarray(entry["hd95"])[:, 2])),
    }


def table(results: list[dict[str, Any]]) -> str:
    """Markdown table: mean ± sd over seeds of the per-run test means."""
    first = results[0]["scores"]["decodings"]["labels"]
    n, n_et = len(first["et_in_ref"]), int(np.sum(first["et_in_ref"]))
    lines = [
        f"| head | decoding | WT Dice | TC Dice | ET Dice | ET Dice, {n_et} cases with ET | spurious ET, {n - n_et} cases without (per seed) "
        f"| ET HD95 (mm) | nesting violations: voxels; cases (all seeds) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for head in dict.fromkeys(r["head"] for r in results):
        runs = [r for r in results if r["head"] == head]
        for name in runs[0]["scores"]["decodings"]:
            entries = [r["scores"]["decodings"][name] for r in runs]
            summaries = [_summary(e) for e in entries]
            cell = lambda key: f"{np.mean([x[key] for x in summaries]):.3f} ± {np.std([x[key] for x in summaries]):.3f}"
            spurious = ", ".join(str(int(x["spurious_et"])) for x in summaries)
            hd95 = np.mean([x["ET_hd95"] for x in summaries])
            v, c = sum(e["violations"] for e in entries), sum(e["violating_cases"] for e in entries)
            note = " (0 by construction)" if name == "labels" or name.startswith("P(level") else ""
            lines.append(f"| {head} | {name} | {cell('WT')} | {cell('TC')} | {cell('ET')} | {cell('ET_with_et')} | {spurious} | {hd95:.1f} | {v}; {c}{note} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/nested_vs_softmax"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--heads", default="multilevel,softmax", help="comma-separated: multilevel, softmax, sigmoid, multilevel_fixed")
    parser.add_argument("--n-train", type=int, default=16)
    parser.add_argument("--n-test", type=int, default=20)
    parser.add_argument("--spacing", type=float, default=None, help="phantom voxel size and target spacing in mm (default: the pipelines' 3 mm)")
    parser.add_argument("--epochs", type=int, default=None, help="override train.epochs (smoke runs)")
    parser.add_argument("--iterations", type=int, default=None, help="override train.iterations_per_epoch (smoke runs)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared machine)")
    parser.add_argument("--reuse", action="store_true", help="skip training where OUT/<head>_seed<k>/model exists (training is "
                        "deterministic: cases 0..n_train-1 do not depend on --n-test, so more test cases can be scored later)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    heads = [h.strip() for h in args.heads.split(",") if h.strip()]
    unknown = sorted(set(heads) - set(PIPELINES))
    if unknown:
        parser.error(f"unknown head(s) {unknown}; choose from {sorted(PIPELINES)}")

    data = args.out / "data"
    spacing = args.spacing or load_pipeline(ROOT / "pipelines" / f"{PIPELINES['multilevel']}.yaml").preprocess.target_spacing[0]
    if not (data / "dataset.json").is_file():
        make_glioma_dataset(data, args.n_train, args.n_test, seed=0, spacing_mm=[spacing] * 3)
    all_cases = {c["case"]: c for c in load_decathlon(data / "dataset.json")}
    test_cases = load_decathlon(data / "dataset.json", section="medseg_test_labels")

    results = []
    for seed in args.seeds:
        for head in heads:
            run_dir = args.out / f"{head}_seed{seed}"
            t0 = time.perf_counter()
            if not (args.reuse and (run_dir / "model" / "medseg.json").is_file()):
                Trainer(make_config(head, seed, data, args), run_dir, device="cpu", force=True, progress=False).fit()
            train_s = time.perf_counter() - t0
            package = load_model_package(run_dir / "model")
            summary = package.manifest.training
            val_names = package.manifest.training["val_cases"]
            val = predict_cases(run_dir / "model", head, [all_cases[n] for n in val_names])
            test = predict_cases(run_dir / "model", head, test_cases)
            params = sum(p.numel() for p in package.network.parameters())
            row = {"head": head, "seed": seed, "params": params, "train_seconds": round(train_s, 1),
                   "best_epoch": summary["best_epoch"], "best_val_score": summary["best_val_score"],
                   "scores": score_run(head, val, test)}
            results.append(row)
            print(f"{head} seed {seed}: {params} parameters, trained in {train_s:.0f} s (0: reused), best epoch {summary['best_epoch']}, "
                  f"thresholds {row['scores']['thresholds']}", flush=True)
    (args.out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "threads": torch.get_num_threads(),
                                                        "omp": os.environ.get("OMP_NUM_THREADS"), "results": results}, indent=2))
    print()
    print(table(results))


if __name__ == "__main__":
    main()
