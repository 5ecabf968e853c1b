"""Claim experiment: MICDIR beats VoxelMorph on grey/white-matter Dice after registration, same budget.

Design (pre-registered): ``pipelines/experiments/micdir_design.md``. Intramodal (T1 -> T1) pairs made from
nilearn's MNI152 template with the generator's larger, multi-scale deformations (``deformation:
multiscale``: a global component up to 32 mm plus 12 mm and 6 mm components) at 4 mm on a 48^3 grid.
Arms, each trained through ``medseg train``'s trainer from the pipeline YAMLs ``brain_voxelmorph.yaml`` /
``brain_micdir.yaml`` with the same data, steps, batch and learning rate, each with its own code's loss:

- ``VoxelMorph`` (baseline): VxmDense, local NCC (window 9) + grad-L2;
- ``MICDIR`` (treatment): the code's flow head (ends with LeakyReLU(0.2), ``flow_activation: true``);
- ``MICDIR linear head`` (secondary arm): ``flow_activation: false``;
- ``MICDIR + cycle loss`` (optional, not in the design): the paper's inverse-consistency term.

Every model registers each held-out pair through ``medseg register``'s code (``Registrar``). Score per
(arm, seed, test pair): mean Dice of grey and white matter of the warped moving labels against the fixed
labels; beside it CSF/other Dice, % folding (non-positive Jacobian determinant) and the inverse-consistency
error (mm) of the forward/backward fields. Gate: VoxelMorph raises the score over identity by >= 0.05.
Verdict: ``claims.summarise`` (crossed bootstrap over seeds x test pairs) with margin 0.01.

    OMP_NUM_THREADS=1 python pipelines/experiments/micdir_claim.py --out runs/micdir_claim --processes 2
    python pipelines/experiments/micdir_claim.py --out runs/micdir_claim_gpu --device cuda --budget large --processes 5
    python pipelines/experiments/micdir_claim.py --out /tmp/micdir_quick --quick
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import claims  # noqa: E402  - the shared statistics beside this script

from medseg.config import bundled_pipeline, load_pipeline  # noqa: E402
from medseg.data.mni152 import DEFORMATIONS, load_mni152, write_pairs  # noqa: E402
from medseg.engine.registration import RegistrationTrainer  # noqa: E402
from medseg.inference.registration import Registrar  # noqa: E402
from medseg.model.package import load_model_package  # noqa: E402

SEEDS = [0, 1, 2, 3, 4]
MARGIN = 0.01
GATE = 0.05  # VoxelMorph's mean score minus identity's, over seeds x test pairs
DATA_SEED = 0
TISSUES = ("grey_matter", "white_matter")  # the primary score; csf_other is reported beside it


@dataclass(frozen=True)
class Budget:
    """Grid, data and training budget of one run (the same for every arm)."""

    resolution_mm: int
    shape: tuple[int, int, int]
    n_train: int
    n_test: int
    steps: int
    batch: int
    lr: float
    micdir: dict[str, Any] = field(default_factory=dict)  # network kwargs over brain_micdir.yaml's
    voxelmorph: dict[str, Any] = field(default_factory=dict)  # over brain_voxelmorph.yaml's


BUDGETS = {
    # CPU (the design): stride 8 for both networks; MICDIR keeps the code's 4^3 nodes (pooled from 6^3)
    "cpu": Budget(4, (48, 48, 48), n_train=40, n_test=8, steps=360, batch=1, lr=1e-3,
                  micdir={"encoder_channels": [16, 32, 32, 32], "decoder_channels": [32, 32, 32]},
                  voxelmorph={"encoder_channels": [32, 32, 32], "decoder_channels": [32, 32, 32, 32, 16]}),
    # GPU (secondary run): 3 mm, 64^3, one level deeper (stride 16: the deepest map is the 4^3 node grid, the
    # code's 128 -> 4 ratio), batch 2 (the code's batch statistics: gamma averaged over the batch), more steps
    "large": Budget(3, (64, 64, 64), n_train=60, n_test=12, steps=1500, batch=2, lr=1e-3,
                    micdir={"encoder_channels": [16, 32, 32, 32, 32], "decoder_channels": [32, 32, 32, 32]},
                    voxelmorph={"encoder_channels": [32, 32, 32, 32], "decoder_channels": [32, 32, 32, 32, 32, 16]}),
    # --quick: checks the script end to end in seconds; says nothing about the claim
    "quick": Budget(6, (32, 32, 32), n_train=2, n_test=2, steps=2, batch=1, lr=1e-3,
                    micdir={"encoder_channels": [4, 8, 8, 8], "decoder_channels": [8, 8, 8], "head_channels": [4],
                            "half_head_channels": [4], "node_grid": 2, "latent_channels": 3, "gcn_channels": [4, 3]},
                    voxelmorph={"encoder_channels": [4, 8, 8], "decoder_channels": [8, 8, 8, 8, 4]}),
}
ARMS = {  # name: (pipeline, network kwargs, loss kwargs)
    "VoxelMorph": ("brain_voxelmorph", {}, {}),
    "MICDIR": ("brain_micdir", {}, {}),  # the pipeline's default: the code's LeakyReLU flow head
    "MICDIR linear head": ("brain_micdir", {"flow_activation": False}, {}),
    "MICDIR + cycle loss": ("brain_micdir", {}, {"inverse_consistency_weight": 1.0}),
}
DEFAULT_ARMS = ["VoxelMorph", "MICDIR", "MICDIR linear head"]
DESIGN = claims.Design(
    method="MICDIR",
    claim="MICDIR beats VoxelMorph on grey/white-matter Dice after registration at the same budget",
    paper="intramodal Dice 0.801 vs 0.775 (+0.027)",
    metric="mean grey/white-matter Dice of the warped moving labels per test pair (4 mm, multi-scale deformations)",
    baseline="VoxelMorph",
    treatment="MICDIR",
    gate=f"VoxelMorph raises GM/WM Dice over identity by >= {GATE}",
    margin=MARGIN,
    design_file="pipelines/experiments/micdir_design.md",
    command="OMP_NUM_THREADS=1 python pipelines/experiments/micdir_claim.py --out runs/micdir_claim --processes 2",
)


def make_data(out: Path, budget: Budget) -> Path:
    """Training and held-out test pairs (generated once; the same for every arm and seed)."""
    index = out / "data" / "pairs.json"
    if not index.is_file():
        template = load_mni152(budget.resolution_mm, shape=budget.shape)
        write_pairs(index.parent, budget.n_train, seed=DATA_SEED, template=template, n_test=budget.n_test, force=True,
                    deformation=DEFORMATIONS["multiscale"])
    return index


def config_for(arm: str, seed: int, budget: Budget, index: Path) -> Any:
    """The arm's pipeline YAML with this experiment's data, grid, budget and seed (no validation: last weights)."""
    pipeline, net_kwargs, loss_kwargs = ARMS[arm]
    epochs = 4
    overrides = {
        "seed": seed,
        "data.synthetic": None,
        "data.dataset": str(index),
        "data.val_fraction": 0.0,
        "preprocess.target_spacing": [float(budget.resolution_mm)] * 3,
        "train.patch_size": list(budget.shape),
        "train.batch_size": budget.batch,
        "train.epochs": epochs,
        "train.iterations_per_epoch": max(1, budget.steps // epochs),
        "train.lr": budget.lr,
        "train.threads": 1,  # deterministic pipelines default to 2 threads; claims.run_parallel runs one per process
    }
    config = load_pipeline(bundled_pipeline(pipeline), overrides)
    sizes = budget.voxelmorph if pipeline == "brain_voxelmorph" else budget.micdir
    return config.model_copy(update={
        "network": config.network.model_copy(update={"kwargs": {**config.network.kwargs, **sizes, **net_kwargs}}),
        "loss": config.loss.model_copy(update={"kwargs": {**config.loss.kwargs, **loss_kwargs}}),
    })


def run_arm(out: Path, budget_name: str, arm: str, seed: int, device: str) -> list[dict[str, Any]]:
    """Train one arm for one seed (skipped when its rows exist) and score every held-out pair."""
    budget = BUDGETS[budget_name]
    index = out / "data" / "pairs.json"
    run = out / "runs" / f"{arm.lower().replace(' + ', '_').replace(' ', '_')}_s{seed}"
    cached = run / "rows.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    start, cpu_start = time.perf_counter(), time.process_time()
    RegistrationTrainer(config_for(arm, seed, budget, index), run, device=device, force=True, progress=False).fit()
    train_seconds, train_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    package = load_model_package(run / "model")
    params = sum(p.numel() for p in package.network.parameters())
    registrar = Registrar(package, torch.device(device))
    rows = []
    for pair in json.loads(index.read_text())["test"]:
        files = {k: index.parent / pair[k] for k in ("fixed", "moving", "moving_labels", "fixed_labels")}
        qa = registrar.register_files(files["fixed"], files["moving"], files["moving_labels"], files["fixed_labels"], inverse=True).qa
        after, before = qa["dice_after"], qa["dice_before"]
        rows.append({
            "arm": arm, "seed": seed, "case": pair["name"],
            "score": float(np.mean([after[t] for t in TISSUES])),
            "identity": float(np.mean([before[t] for t in TISSUES])),
            **{f"dice_{k}": float(v) for k, v in after.items()},
            "folding_percent": 100.0 * float(qa["folding_fraction"]),
            "ice_mm": float(qa["inverse_consistency_mm"]),
            "params": params, "train_seconds": round(train_seconds, 1), "train_cpu_seconds": round(train_cpu, 1),
        })
    cached.write_text(json.dumps(rows, indent=2))
    return rows


def _stat(values: list[float], digits: int = 3) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.{digits}f}"


def diagnostics(rows: list[dict[str, Any]], arms: list[str]) -> str:
    """Per arm: mean ± sd over seeds x test pairs of the score, each tissue, folding, ICE; params, time."""
    lines = ["| arm | params | GM/WM Dice | grey matter | white matter | CSF/other | folding (% voxels) | inverse consistency (mm) | train s / run (wall, CPU) |",
             "|---|---|---|---|---|---|---|---|---|"]
    first = [r for r in rows if r["arm"] == arms[0]]
    lines.append(f"| identity (no registration) | - | {_stat([r['identity'] for r in first])} | | | | 0 | 0 | - |")
    for arm in arms:
        mine = [r for r in rows if r["arm"] == arm]
        cells = [_stat([r[f"dice_{t}"] for r in mine]) for t in ("grey_matter", "white_matter", "csf_other")]
        lines.append(f"| {arm} | {mine[0]['params'] / 1000:.0f}k | {_stat([r['score'] for r in mine])} | {' | '.join(cells)} | "
                     f"{_stat([r['folding_percent'] for r in mine])} | {_stat([r['ice_mm'] for r in mine], 2)} | "
                     f"{np.mean([r['train_seconds'] for r in mine]):.0f}, {np.mean([r['train_cpu_seconds'] for r in mine]):.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/micdir_claim"))
    parser.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
    parser.add_argument("--arms", nargs="+", default=DEFAULT_ARMS, choices=list(ARMS),
                        help="the baseline (VoxelMorph) and MICDIR are needed for the verdict; pilots may run VoxelMorph alone")
    parser.add_argument("--processes", type=int, default=1, help="parallel arm x seed runs, one thread each")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--budget", default="cpu", choices=["cpu", "large"], help="large: the GPU budget (secondary run)")
    parser.add_argument("--quick", action="store_true", help="tiny data and steps: checks the script, decides nothing")
    args = parser.parse_args()
    budget_name = "quick" if args.quick else args.budget
    budget = BUDGETS[budget_name]
    start = time.perf_counter()
    make_data(args.out, budget)
    print(f"data: {budget.n_train} training + {budget.n_test} test pairs at {budget.resolution_mm} mm, "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    tasks = [(args.out, budget_name, arm, seed, args.device) for seed in args.seeds for arm in args.arms]
    rows = [row for result in claims.run_parallel(run_arm, tasks, args.processes) for row in result]
    extra = {"budget": {"name": budget_name, **asdict(budget)}, "arms": args.arms, "seconds": round(time.perf_counter() - start, 1)}
    table = diagnostics(rows, args.arms)
    if not {DESIGN.baseline, DESIGN.treatment} <= set(args.arms):
        (args.out / "pilot.json").write_text(json.dumps({"rows": rows, **extra}, indent=2))
        print(table)
        return
    base = [r for r in rows if r["arm"] == DESIGN.baseline]
    gate_value = float(np.mean([r["score"] - r["identity"] for r in base]))
    summary = claims.summarise(rows, DESIGN, gate_value, gate_value >= GATE)
    secondary = {}
    for arm in (a for a in args.arms if a not in (DESIGN.baseline, DESIGN.treatment)):
        design = claims.Design(**{**asdict(DESIGN), "treatment": arm})
        secondary[arm] = claims.summarise(rows, design, gate_value, gate_value >= GATE)
    extra["secondary"] = secondary
    extra["diagnostics"] = table
    text = claims.write_results(args.out, DESIGN, rows, summary, extra)
    for arm, result in secondary.items():
        d = result["difference"]
        text += (f"\n\nSecondary arm {arm} - VoxelMorph: {d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] "
                 f"(rule: {result['verdict']}).")
    text += f"\n\nBudget `{budget_name}`, {args.device}, {extra['seconds']:.0f} s wall.\n\n{table}\n"
    (args.out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
