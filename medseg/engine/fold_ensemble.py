"""``medseg ensemble RUN -o model_ens``: one model package from the folds of a cross-validation run.

The package's network is the registry's ``ensemble`` (:class:`~medseg.networks.ensemble.Ensemble`): the fold
networks' softmax probabilities averaged inside every sliding window, so ``medseg predict -m model_ens`` needs
no option. The run's CV summary gains the ensemble's rows and a comparison with the mean fold:

* on the out-of-fold cases: each fold model is scored on cases it never saw, the ensemble on the same cases,
  but k-1 of its k members trained on each of them, so this comparison flatters the ensemble (said so);
* on held-out test cases, when the dataset has labelled ones (``imagesTs``/``labelsTs``, a phantom's test
  labels): every fold model and the ensemble on cases none of them trained on, a fair comparison.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, cast

import numpy as np
from torch import nn

from medseg.config import NetworkConfig, load_pipeline
from medseg.data.layouts import Case, discover_cases, load_image_label_folders
from medseg.device import resolve_device
from medseg.engine.folds import SPLITS, SUMMARY, score_case, summary_rows, write_summary
from medseg.errors import MedsegInputError, MedsegModelError
from medseg.inference.predictor import Predictor
from medseg.io.atomic import write_json
from medseg.model.package import (
    ModelPackage,
    build_network,
    core_network,
    load_model_package,
    read_manifest,
    save_model_package,
)

OOF_CAVEAT = "out-of-fold cases: each fold model never saw its cases, but k-1 of the ensemble's k members trained on each (flatters the ensemble)"


def fold_packages(run_dir: Path) -> list[Path]:
    packages = sorted((p.parent for p in run_dir.glob("fold_*/model/medseg.json")), key=lambda p: int(p.parent.name.split("_")[1]))
    if len(packages) < 2:
        raise MedsegInputError(run_dir, f"holds {len(packages)} trained fold(s) (fold_K/model); an ensemble needs at least 2 (medseg train --folds)")
    return packages


def _comparable(value: Any) -> Any:
    """A manifest field as compared between folds (a network's ``init_from`` may differ)."""
    return value.model_dump(exclude={"init_from"}) if isinstance(value, NetworkConfig) else value


def build_ensemble(run_dir: str | Path, out: str | Path, force: bool = False) -> Path:
    """Write the ensemble package of ``run_dir``'s folds to ``out``; folds must share everything but weights."""
    run_dir = Path(run_dir)
    packages = fold_packages(run_dir)
    manifests = [read_manifest(p) for p in packages]
    first = manifests[0]
    keys = ("network", "output", "labels", "modalities", "preprocess", "patch_size", "roi")
    for path, m in zip(packages[1:], manifests[1:]):
        differ = [k for k in keys if _comparable(getattr(m, k)) != _comparable(getattr(first, k))]
        if differ:
            raise MedsegModelError(f"{path}: differs from {packages[0]} in {', '.join(differ)}; only folds of one pipeline make an ensemble")
    if first.output.kind != "labels" or first.roi is not None:
        raise MedsegModelError(f"{packages[0]}: averaging softmax probabilities needs the 'labels' head without a cascade (got {first.output.kind})")
    member = {"name": first.network.name, "kwargs": dict(first.network.kwargs)}
    network = NetworkConfig(name="ensemble", kwargs={"members": [member] * len(packages)},
                            slice_axis=first.network.slice_axis, slice_context=first.network.slice_context)
    ensemble = build_network(network)
    members = cast(nn.ModuleList, core_network(ensemble).members)
    for slot, path in zip(members, packages):
        slot.load_state_dict(core_network(load_model_package(path).network).state_dict())
    training = {"ensemble_of": [str(p) for p in packages], "folds": len(packages), "run": str(run_dir),
                "val_cases": sorted({c for m in manifests for c in m.training.get("val_cases", [])})}
    manifest = first.model_copy(update={"network": network, "training": training, "name": f"{first.name}_ensemble"})
    return save_model_package(out, ensemble, manifest, force=force)


def held_out_cases(run_dir: Path) -> list[Case]:
    """Labelled test cases of the run's dataset (never trained on by any fold), or none."""
    config_path = run_dir / "fold_0" / "config.yaml"
    if not config_path.is_file():
        return []
    config = load_pipeline(config_path)
    source = config.resolve(config.data.dataset or ".")
    root = source.parent if source.suffix == ".json" else source
    meta_path = root / "dataset.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        entries = [e for e in meta.get("medseg_test_labels", []) if e.get("label")]
        if entries:
            out = []
            for e in entries:
                images = e["image"] if isinstance(e["image"], list) else [e["image"]]
                out.append({"case": Path(e["label"]).name.split(".")[0], "image": [str(root / p) for p in images], "label": str(root / e["label"])})
            return out
    if (root / "imagesTs").is_dir() and (root / "labelsTs").is_dir():
        return [c for c in load_image_label_folders(root, "imagesTs", "labelsTs") if c["label"]]
    return []


def _mean_dice(rows: list[dict[str, Any]]) -> float:
    return float(np.mean([r["dice"] for r in rows])) if rows else float("nan")


def compare_with_folds(run_dir: str | Path, package: str | Path, device: str = "auto") -> dict[str, Any]:
    """Score the ensemble on the out-of-fold cases (and held-out test cases) and add it to the CV summary."""
    run_dir, dev = Path(run_dir), resolve_device(device)[0]
    summary_path = run_dir / SUMMARY
    if not summary_path.is_file() or not (run_dir / SPLITS).is_file():
        raise MedsegInputError(run_dir, f"has no {SUMMARY}/{SPLITS} (train with --folds first)")
    with open(summary_path, encoding="utf-8") as fh:
        fold_rows = [r for r in csv.DictReader(fh) if r["model"].startswith("fold_")]
    for r in fold_rows:
        r["label"], r["dice"], r["hd95_mm"] = int(r["label"]), float(r["dice"]), float(r["hd95_mm"])
    ens: ModelPackage = load_model_package(package, dev)
    labels = ens.manifest.labels
    config = load_pipeline(run_dir / "fold_0" / "config.yaml")
    by_name = {c["case"]: c for c in discover_cases(config.resolve(config.data.dataset or "."), config.data.layout)}
    predictor = Predictor(ens, dev)
    ens_rows = []
    for name in sorted({r["case"] for r in fold_rows}):
        ens_rows += [{"model": "ensemble", "fold": "all", **r} for r in score_case(predictor, by_name[name], labels, None)]
    result: dict[str, Any] = {
        "out_of_fold": {"compared_on": OOF_CAVEAT, "cases": len({r["case"] for r in ens_rows}),
                        "mean_fold_dice": _mean_dice(fold_rows), "ensemble_dice": _mean_dice(ens_rows)},
    }
    result["out_of_fold"]["ensemble_better"] = result["out_of_fold"]["ensemble_dice"] > result["out_of_fold"]["mean_fold_dice"]
    test_rows: list[dict[str, Any]] = []
    held_out = held_out_cases(run_dir)
    if held_out:
        fold_dirs = sorted(run_dir.glob("fold_*/model/medseg.json"))
        fold_test = []
        for k, manifest in enumerate(fold_dirs):
            fold_predictor = Predictor(load_model_package(manifest.parent, dev), dev)
            rows = [r for c in held_out for r in score_case(fold_predictor, c, labels, None)]
            fold_test.append(_mean_dice(rows))
            test_rows += [{"model": f"fold_{k}", "fold": "test", **r} for r in rows]
        ens_test = [r for c in held_out for r in score_case(predictor, c, labels, None)]
        test_rows += [{"model": "ensemble", "fold": "test", **r} for r in ens_test]
        result["held_out"] = {"compared_on": f"{len(held_out)} labelled test case(s) no fold trained on (fair)",
                              "mean_fold_dice": float(np.mean(fold_test)), "ensemble_dice": _mean_dice(ens_test)}
        result["held_out"]["ensemble_better"] = result["held_out"]["ensemble_dice"] > result["held_out"]["mean_fold_dice"]
    rows = fold_rows + summary_rows(fold_rows, "folds") + ens_rows + summary_rows(ens_rows, "ensemble") + test_rows
    write_summary(summary_path, rows)
    json_path = run_dir / "cv_summary.json"
    previous = json.loads(json_path.read_text(encoding="utf-8")) if json_path.is_file() else {}
    write_json(json_path, {**previous, "ensemble": {"package": str(package), **result}})
    return result


__all__ = ["OOF_CAVEAT", "build_ensemble", "compare_with_folds", "fold_packages", "held_out_cases"]
