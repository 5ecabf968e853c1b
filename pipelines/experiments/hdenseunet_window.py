"""Diagnostic: does H-DenseUNet's 3D part help or hurt on whole-ROI inference, Gaussian windows vs the code's chunks?

Trains the phantom recipe's ``dense2d`` -> ``hybrid_3d`` -> ``hybrid`` stages (the budget of
``hdenseunet_claim.py``, without its 2D arm), then scores the hybrid package through the full cascade four
ways: ``inference.window`` ``gaussian`` (medseg's sliding window, the old default) or ``chunks`` (the code's
``predict_tumor_inwindow``, the new default), each with the 3D features as trained or zeroed at inference
(HFF then sees the 2D features alone). Dice on the held-out and on the training cases, argmax with the code's
structural post-processing. Writes ``OUT/window_STAGE.json`` and ``OUT/window_STAGE.md``.

Usage:
    OMP_NUM_THREADS=1 python pipelines/experiments/hdenseunet_window.py --out runs/hd_window --pretrain 40 --extra 40 --n-train 6 --n-test 3
    OMP_NUM_THREADS=1 python pipelines/experiments/hdenseunet_window.py --out runs/hd_window --score-only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hdenseunet_claim import recipe, score, write  # noqa: E402

from medseg.engine.stages import run_stages  # noqa: E402
from medseg.model.package import ModelPackage, load_model_package  # noqa: E402


@contextmanager
def zero_3d(package: ModelPackage) -> Any:
    """The hybrid with its 3D decoder features replaced by zeros (HFF sees ``0 + features_2d``)."""
    net3d = package.network.net3d
    net3d.decode = lambda x: torch.zeros((x.shape[0], net3d.feature_channels, *x.shape[2:]), dtype=x.dtype, device=x.device)
    try:
        yield package
    finally:
        del net3d.decode


def cases(dataset: Path, key: str) -> list[dict[str, Any]]:
    meta = json.loads(dataset.read_text())
    return [{"case": Path(t["image"]).name.split(".")[0], "image": [str(dataset.parent / t["image"])], "label": str(dataset.parent / t["label"])}
            for t in meta[key]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/hd_window")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrain", type=int, default=40, help="2D pre-training epochs (10 steps each)")
    parser.add_argument("--extra", type=int, default=40, help="hybrid epochs, half frozen 2D, half end to end (10 steps each)")
    parser.add_argument("--n-train", type=int, default=6)
    parser.add_argument("--n-test", type=int, default=3)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--score-only", action="store_true")
    parser.add_argument("--stage", default="hybrid", help="the hybrid package to score: hybrid (end to end) or hybrid_3d (2D frozen)")
    parser.add_argument("--keep", nargs="*", default=[], help="stages to reuse from an earlier run in --out when finished")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    start = time.perf_counter()
    path = out / "recipe.yaml"
    if not args.score_only:
        write(recipe(args, args.seed, None, None), path)
        for stage in ("localiser", "dense2d", "hybrid_3d", "hybrid"):
            if stage in args.keep and (out / stage / "model" / "medseg.json").is_file():
                continue  # reuse a stage an earlier run finished (e.g. the localiser and dense2d, to retrain the hybrid)
            run_stages(path, out, only=stage, device="cpu", progress=False, force=True)
    train_s = time.perf_counter() - start
    dataset = (out / "data" / "dataset.json").resolve()
    sets = {"test": cases(dataset, "medseg_test_labels"), "train": cases(dataset, "training")}
    rows = []
    for window in ("gaussian", "chunks"):
        for zeroed in (False, True):
            package = load_model_package(out / args.stage / "model")
            package.manifest.inference = package.manifest.inference.model_copy(update={"window": window})
            with zero_3d(package) if zeroed else nullcontext(package):
                for name, subset in sets.items():
                    result = score(package, subset)["argmax"]
                    rows.append({"window": window, "3d": "zeroed" if zeroed else "on", "cases": name, **result})
                    print(json.dumps(rows[-1]), flush=True)
    (out / f"window_{args.stage}.json").write_text(json.dumps({"args": vars(args), "train_seconds": train_s, "rows": rows}, indent=2))
    lines = [f"Phantom recipe, seed {args.seed}, {args.n_train} training / {args.n_test} test cases, {args.pretrain * 10} 2D steps + "
             f"{args.extra * 10} hybrid steps; package {args.stage}; argmax + code post-processing; training {train_s:.0f} s.", "",
             "| window | 3D features | cases | tumour Dice per case | tumour Dice global | liver Dice per case | liver Dice global |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['window']} | {r['3d']} | {r['cases']} | {r['tumour_per_case']:.3f} | {r['tumour_global']:.3f} | "
                     f"{r['liver_per_case']:.3f} | {r['liver_global']:.3f} |")
    (out / f"window_{args.stage}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
