"""Claim experiment: MICDIR against a VoxelMorph baseline of similar size on held-out MNI152-derived pairs.

Intramodal (T1 -> T1) and intermodal (synthetic T2 moving -> T1 fixed) pairs, several seeds; identity (no
registration) and a classical SimpleITK B-spline registration (Mattes mutual information) as reference
rows. Tissue Dice (CSF/other, grey, white matter) of the warped moving labels, fraction of voxels with a
non-positive Jacobian determinant and inverse-consistency error (mm, the networks' reverse fields; the
B-spline's from registering each pair in both directions), all measured through ``medseg register``'s
code path on the held-out pairs. MICDIR arms: the code's flow head (ends with LeakyReLU(0.2),
``flow_activation: true``, the pipeline's default), the same with a linear head (``MICDIR linear head``) and
with the paper's cycle term (``MICDIR + cycle loss``); choose with ``--methods``.

CPU scale: 6 mm voxels on a 32^3 grid, the networks two encoder levels shallower than the paper's
(MICDIR 4 levels keeps the 4^3 = 64-node graph; VoxelMorph one level shallower than MICDIR's baseline
configuration, so both have stride 8), a few hundred Adam steps at lr 1e-3 (the paper: 1e-4 for far
longer). Runs through the pipeline YAMLs ``pipelines/brain_micdir.yaml`` / ``brain_voxelmorph.yaml``
with overrides, so it is the same trainer as ``medseg train``.

    python pipelines/experiments/micdir_vs_voxelmorph.py --out runs/micdir_claim
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.config import bundled_pipeline, load_pipeline
from medseg.data.mni152 import DeformationSpec, load_mni152, write_pairs
from medseg.model.package import load_model_package
from medseg.engine.registration import RegistrationTrainer
from medseg.inference.registration import RAS_TO_LPS_SIGNS, Registrar, folding_on_grid, label_dice, warp_volume
from medseg.io import read_image
from medseg.metrics.registration import inverse_consistency_error

TISSUES = ("csf_other", "grey_matter", "white_matter")
MODALITIES = {"intramodal": ("t1", "t1"), "intermodal": ("t1", "t2")}
GRID = {"resolution_mm": 6, "shape": (32, 32, 32)}
DEFORMATION = DeformationSpec(max_displacement_mm=20.0, smoothness_mm=20.0)
MICDIR_KWARGS = {"encoder_channels": [16, 32, 32, 32], "decoder_channels": [32, 32, 32], "node_grid": 4}
VOXELMORPH_KWARGS = {"encoder_channels": [32, 32, 32], "decoder_channels": [32, 32, 32, 32, 16], "integration_steps": 3}
METHODS = {  # name: (pipeline, network kwargs, loss kwargs)
    "VoxelMorph": ("brain_voxelmorph", VOXELMORPH_KWARGS, {}),
    "MICDIR": ("brain_micdir", MICDIR_KWARGS, {}),
    "MICDIR + cycle loss": ("brain_micdir", MICDIR_KWARGS, {"inverse_consistency_weight": 1.0}),
    # the code ends each flow head with LeakyReLU(0.2) (flow_activation, the default above); a linear head
    "MICDIR linear head": ("brain_micdir", {**MICDIR_KWARGS, "flow_activation": False}, {}),
}


def make_data(root: Path, modality: str, n_train: int, n_test: int) -> Path:
    """Training (+ validation) and held-out test pairs of one modality (generated once)."""
    index = root / "data" / modality / "pairs.json"
    if not index.is_file():
        fixed_contrast, moving_contrast = MODALITIES[modality]
        template = load_mni152(GRID["resolution_mm"], shape=GRID["shape"])
        write_pairs(index.parent, n_train, seed=0, template=template, n_test=n_test, force=True,
                    fixed_contrast=fixed_contrast, moving_contrast=moving_contrast, deformation=DEFORMATION)
    return index


def train(root: Path, method: str, modality: str, seed: int, data: Path, steps: int, lr: float) -> tuple[Path, dict[str, Any]]:
    """Train one model (skipped when its package exists); returns the package and a summary."""
    pipeline, net_kwargs, loss_kwargs = METHODS[method]
    run = root / modality / f"{method.lower().replace(' + ', '_').replace(' ', '_')}_s{seed}"
    loss = dict(loss_kwargs)
    if modality == "intermodal":
        loss["similarity"] = "mi"  # NCC cannot match the inverted T2 contrast; both methods get MI
    epochs = 4
    overrides = {
        "seed": seed,
        "data.synthetic": None,
        "data.dataset": str(data),
        "preprocess.target_spacing": [float(GRID["resolution_mm"])] * 3,
        "train.patch_size": list(GRID["shape"]),
        "train.epochs": epochs,
        "train.iterations_per_epoch": max(1, steps // epochs),
        "train.lr": lr,
        "train.val_every": epochs,
    }
    config = load_pipeline(bundled_pipeline(pipeline), overrides)
    config = config.model_copy(update={
        "network": config.network.model_copy(update={"kwargs": {**config.network.kwargs, **net_kwargs}}),
        "loss": config.loss.model_copy(update={"kwargs": {**config.loss.kwargs, **loss}}),
    })
    summary_path = run / "summary.json"
    if not summary_path.is_file():
        start = time.process_time()
        summary = RegistrationTrainer(config, run, device="cpu", force=True, progress=False).fit()
        summary["cpu_seconds"] = round(time.process_time() - start, 1)
        summary_path.write_text(json.dumps(summary, indent=2))
    return run / "model", json.loads(summary_path.read_text())


def evaluate_model(package: Path, pairs: list[dict[str, str]], root: Path) -> list[dict[str, Any]]:
    """``medseg register``'s computation on each held-out pair: Dice, folding, inverse consistency."""
    registrar = Registrar(load_model_package(package), torch.device("cpu"))
    rows = []
    for pair in pairs:
        files = [root / pair[k] for k in ("fixed", "moving", "moving_labels", "fixed_labels")]
        result = registrar.register_files(files[0], files[1], files[2], files[3], inverse=True)
        rows.append({"dice": result.qa["dice_after"], "identity": result.qa["dice_before"],
                     "folding": result.qa["folding_fraction"], "ice_mm": result.qa["inverse_consistency_mm"]})
    return rows


BSPLINE_ITERATIONS = [100]  # set from --bspline-iterations


def _bspline(fixed: Any, moving: Any) -> np.ndarray:
    """SimpleITK B-spline (4^3 mesh) + Mattes MI, two resolutions, LBFGSB: ``(I, J, K, 3)`` LPS field."""
    import SimpleITK as sitk

    transform = sitk.BSplineTransformInitializer(fixed, [4, 4, 4], order=3)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=BSPLINE_ITERATIONS[0], maximumNumberOfCorrections=5)
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([1.0, 0.0])
    method.SetInitialTransform(transform, inPlace=True)
    method.Execute(fixed, moving)
    field = sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat64, fixed.GetSize(), fixed.GetOrigin(),
                                              fixed.GetSpacing(), fixed.GetDirection())
    return np.transpose(sitk.GetArrayFromImage(field), (2, 1, 0, 3)).astype(np.float32)


def _demons(fixed: Any, moving: Any) -> np.ndarray:
    """SimpleITK symmetric-forces demons (100 iterations, field smoothing 1.5 voxels) after histogram
    matching (intramodal only): ``(I, J, K, 3)`` LPS field."""
    import SimpleITK as sitk

    demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
    demons.SetNumberOfIterations(100)
    demons.SetStandardDeviations(1.5)
    field = demons.Execute(fixed, sitk.HistogramMatching(moving, fixed))
    return np.transpose(sitk.GetArrayFromImage(field), (2, 1, 0, 3)).astype(np.float32)


CLASSICAL = {"SimpleITK B-spline (Mattes MI)": _bspline, "SimpleITK demons": _demons}


def evaluate_classical(method: str, pairs: list[dict[str, str]], root: Path) -> list[dict[str, Any]]:
    """A SimpleITK registration of each pair, both directions (for the inverse consistency)."""
    import SimpleITK as sitk

    register = CLASSICAL[method]
    rows = []
    for pair in pairs:
        paths = {k: root / pair[k] for k in ("fixed", "moving", "fixed_labels", "moving_labels")}
        fixed, moving = (sitk.Cast(sitk.ReadImage(str(paths[k])), sitk.sitkFloat32) for k in ("fixed", "moving"))
        forward, backward = register(fixed, moving), register(moving, fixed)
        fixed_labels, geometry = read_image(paths["fixed_labels"], "label")
        moving_labels, moving_geometry = read_image(paths["moving_labels"], "label")
        ras = torch.from_numpy(np.moveaxis(forward * RAS_TO_LPS_SIGNS, -1, 0).copy())
        warped = warp_volume(torch.from_numpy(moving_labels.astype(np.float32))[None], moving_geometry.affine, ras, geometry, labels=True)
        to_vox = np.linalg.inv(geometry.affine[:3, :3])
        vox = [torch.from_numpy(np.einsum("ij,...j->i...", to_vox, f * RAS_TO_LPS_SIGNS)).float()[None] for f in (forward, backward)]
        rows.append({
            "dice": label_dice(warped[0].numpy().astype(np.int64), fixed_labels, dict(enumerate(("background", *TISSUES)))),
            "folding": folding_on_grid(ras, geometry),
            "ice_mm": float(inverse_consistency_error(vox[0], vox[1], geometry.spacing)[0]),
        })
    return rows


def _mean_sd(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    v = np.asarray(values, dtype=float) * scale
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}"


def table(results: dict[str, dict[str, list[dict[str, Any]]]], info: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| pairs | method | params | tissue Dice (mean ± sd) | CSF/other | grey matter | white matter | folding (% voxels) | inverse consistency (mm) | train CPU s / model |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for modality, methods in results.items():
        for method, rows in methods.items():
            mean_dice = [float(np.mean([r["dice"][t] for t in TISSUES])) for r in rows]
            tissue = [_mean_sd([r["dice"][t] for r in rows]) for t in TISSUES]
            meta = info.get(method, {})
            ice = _mean_sd([r["ice_mm"] for r in rows], digits=2) if "ice_mm" in rows[0] else "0 (none)"
            lines.append(
                f"| {modality} | {method} | {meta.get('params', '-')} | {_mean_sd(mean_dice)} | {' | '.join(tissue)} | "
                f"{_mean_sd([r['folding'] for r in rows], 100, 3)} | {ice} | {meta.get(f'cpu_{modality}', '-')} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/micdir_claim"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=240, help="Adam steps per model (batch 1)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--n-train", type=int, default=18, help="training pairs (10 %% of them validate)")
    parser.add_argument("--n-test", type=int, default=8, help="held-out test pairs")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--modalities", nargs="+", default=list(MODALITIES), choices=list(MODALITIES))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: no spinning on a shared machine)")
    parser.add_argument("--bspline-iterations", type=int, default=100, help="LBFGSB iterations per B-spline level")
    parser.add_argument("--intramodal-classical", nargs="*", default=["b-spline", "demons"], choices=["b-spline", "demons"],
                        help="SimpleITK reference rows for intramodal pairs (none: leave them out)")
    parser.add_argument("--intermodal-classical", nargs="*", default=["b-spline"], choices=["b-spline"],
                        help="SimpleITK reference rows for intermodal pairs (demons needs one contrast)")
    args = parser.parse_args()
    args.classical = {"intramodal": args.intramodal_classical, "intermodal": args.intermodal_classical}
    torch.set_num_threads(args.threads)
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    BSPLINE_ITERATIONS[0] = args.bspline_iterations
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    info: dict[str, dict[str, Any]] = {}
    for modality in args.modalities:
        index = make_data(args.out, modality, args.n_train, args.n_test)
        test = json.loads(index.read_text())["test"]
        results[modality] = {"identity (no registration)": []}
        classical = [m for m in CLASSICAL if m.split()[1].lower() in args.classical[modality]]
        for method in classical:
            cached = args.out / modality / f"{method.split()[1].lower()}.json"  # b-spline.json, demons.json
            if not cached.is_file():
                cached.parent.mkdir(parents=True, exist_ok=True)
                cached.write_text(json.dumps(evaluate_classical(method, test, index.parent)))
            results[modality][method] = json.loads(cached.read_text())
        for method in args.methods:
            rows, cpu = [], []
            for seed in args.seeds:
                package, summary = train(args.out, method, modality, seed, index, args.steps, args.lr)
                evaluated = evaluate_model(package, test, index.parent)
                rows += evaluated
                cpu.append(summary["cpu_seconds"])
                info.setdefault(method, {})["params"] = f"{sum(p.numel() for p in load_model_package(package).network.parameters()) / 1000:.0f}k"
                if not results[modality]["identity (no registration)"]:
                    results[modality]["identity (no registration)"] = [
                        {"dice": r["identity"], "folding": 0.0, "ice_mm": 0.0} for r in evaluated
                    ]
            info[method][f"cpu_{modality}"] = f"{np.mean(cpu):.0f}"
            results[modality][method] = rows
            print(f"{modality} {method}: mean tissue Dice {np.mean([np.mean(list(r['dice'].values())) for r in rows]):.3f}", flush=True)
    (args.out / "results.json").write_text(json.dumps({"results": results, "info": info, "args": vars(args)}, indent=2, default=str))
    print(f"\nseeds {args.seeds}, {args.steps} steps/model, lr {args.lr}, {args.n_train} training pairs, {args.n_test} held-out pairs per modality, "
          f"{GRID['resolution_mm']} mm {GRID['shape']} grid, B-spline {args.bspline_iterations} iterations/level\n")
    print(table(results, info))


if __name__ == "__main__":
    main()
