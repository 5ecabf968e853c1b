"""k-fold cross-validation: ``medseg train PIPELINE --folds 5`` (or ``--fold k``).

Splits are deterministic (the pipeline's seed) and written to ``RUN/splits.json`` once, as nnU-Net's
``[{"train": [...], "val": [...]}, ...]``; a ``splits.json`` already in the run folder, or next to the
dataset, is used as it is. Each fold trains into ``RUN/fold_K`` (its validation cases are the fold's), then
every fold's model predicts its own validation cases (out-of-fold, written to ``RUN/oof/``) and the scores
go into ``RUN/cv_summary.csv``: Dice and HD95 per case and label, then mean and sd per label.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config import PipelineConfig, load_pipeline
from medseg.config.stages import is_staged
from medseg.data.layouts import Case
from medseg.device import resolve_device
from medseg.engine import distributed
from medseg.engine.data import pipeline_cases
from medseg.engine.variants import create_trainer
from medseg.errors import MedsegConfigError, MedsegInputError
from medseg.inference.predictor import Predictor
from medseg.io.atomic import ensure_writable_dir, write_json, write_text
from medseg.io.image_io import read_image, write_image
from medseg.metrics.scores import evaluate_arrays
from medseg.model.package import load_model_package

SPLITS, SUMMARY = "splits.json", "cv_summary.csv"
COLUMNS = ("model", "fold", "case", "label", "name", "dice", "hd95_mm")


def kfold_splits(names: list[str], k: int, seed: int) -> list[dict[str, list[str]]]:
    """``k`` folds of the sorted case ``names``, shuffled with ``seed``; fold ``i`` validates on every k-th case."""
    if k < 2:
        raise MedsegConfigError(f"--folds {k}: cross-validation needs at least 2 folds")
    if len(names) < k:
        raise MedsegConfigError(f"--folds {k}: only {len(names)} labelled case(s); each fold needs one to validate on")
    ordered = sorted(names)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    folds = []
    for i in range(k):
        val = sorted(ordered[j] for j in perm[i::k])
        folds.append({"train": [n for n in ordered if n not in val], "val": val})
    return folds


def read_splits(path: Path, names: list[str]) -> list[dict[str, list[str]]]:
    """A user's or an earlier run's ``splits.json``, checked against the dataset's cases."""
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MedsegInputError(path, f"cannot read the splits ({exc})") from exc
    if not isinstance(splits, list) or not all(isinstance(s, dict) and "val" in s for s in splits):
        raise MedsegInputError(path, 'expected a list of {"train": [...], "val": [...]} folds')
    known = set(names)
    for i, fold in enumerate(splits):
        unknown = sorted((set(fold["val"]) | set(fold.get("train", []))) - known)
        if unknown:
            raise MedsegInputError(path, f"fold {i} names case(s) not in the dataset: {', '.join(unknown[:5])}")
        fold.setdefault("train", [n for n in sorted(names) if n not in set(fold["val"])])
    return splits


def fold_splits(run_dir: Path, source: Path, names: list[str], folds: int | None, seed: int) -> list[dict[str, list[str]]]:
    """The run's splits: ``RUN/splits.json``, else the dataset's ``splits.json`` (copied in), else new ones."""
    for candidate in (run_dir / SPLITS, (source if source.is_dir() else source.parent) / SPLITS):
        if candidate.is_file():
            splits = read_splits(candidate, names)
            if folds is not None and len(splits) != folds:
                raise MedsegConfigError(f"{candidate}: has {len(splits)} folds, --folds asks for {folds} (remove it or match it)")
            break
    else:
        splits = kfold_splits(names, folds or 5, seed)
    if not (run_dir / SPLITS).is_file():
        write_json(run_dir / SPLITS, splits)
    return splits


def fold_config(config: PipelineConfig, source: Path, val: list[str]) -> PipelineConfig:
    """The pipeline of one fold: its validation cases named, the dataset by absolute path (a synthetic one
    read from where it was generated), so the fold's ``config.yaml`` stands on its own."""
    update: dict[str, Any] = {"val_cases": list(val), "synthetic": None, "dataset": str(source.resolve())}
    return config.model_copy(update={"data": config.data.model_copy(update=update)})


def score_case(predictor: Predictor, case: Case, labels: dict[int, str], oof_dir: Path | None) -> list[dict[str, Any]]:
    """Predict one case and score it per non-zero label (Dice, HD95); the prediction is kept in ``oof_dir``."""
    result = predictor.predict_files(case["image"])
    ref, _ = read_image(case["label"], "label")
    if oof_dir is not None:
        write_image(oof_dir / f"{case['case']}.nii.gz", result.labels, result.geometry, "label")
    values = [v for v in sorted(labels) if v != 0]
    rows = evaluate_arrays(np.asarray(result.labels), ref, result.geometry.spacing, values, case=case["case"])
    return [{"case": case["case"], "label": r["label"], "name": labels[r["label"]], "dice": r["dice"], "hd95_mm": r["hd95_mm"]} for r in rows]


def summary_rows(rows: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    """Mean and sd per label over ``rows`` (``case`` = ``mean`` / ``sd``)."""
    out = []
    for label in sorted({r["label"] for r in rows}):
        subset = [r for r in rows if r["label"] == label]
        for stat, fn in (("mean", np.mean), ("sd", np.std)):
            out.append({"model": model, "fold": "all", "case": stat, "label": label, "name": subset[0]["name"],
                        "dice": float(fn([r["dice"] for r in subset])), "hd95_mm": float(fn([r["hd95_mm"] for r in subset]))})
    return out


def write_summary(path: Path, rows: list[dict[str, Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return write_text(path, buffer.getvalue())


def cross_validate(
    pipeline: str | Path,
    out: str | Path,
    *,
    folds: int | None = 5,
    fold: int | None = None,
    device: str = "auto",
    epochs: int | None = None,
    force: bool = False,
    progress: bool = True,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the folds (all, or ``fold`` alone; finished folds are kept unless ``force``), then score every
    fold's out-of-fold predictions into ``cv_summary.csv``. Returns the summary (``mean_dice`` per label).
    ``overrides``: dotted pipeline keys (``medseg train --set/--data``)."""
    if is_staged(pipeline):
        raise MedsegConfigError(f"{pipeline}: --folds/--fold train plain pipelines (not staged ones) for now")
    config = load_pipeline(pipeline, overrides)
    if config.task != "segmentation":
        raise MedsegConfigError(f"{pipeline}: --folds/--fold cross-validate segmentation pipelines (task: {config.task})")
    run_dir = ensure_writable_dir(out)
    with distributed.main_first():
        cases = pipeline_cases(config, run_dir)
    data_dir = run_dir / "data" if config.data.synthetic is not None else None
    source = data_dir if data_dir is not None else config.resolve(config.data.dataset or ".")
    splits = fold_splits(run_dir, source, [c["case"] for c in cases], folds, config.seed)
    chosen = range(len(splits)) if fold is None else [fold]
    if fold is not None and not 0 <= fold < len(splits):
        raise MedsegConfigError(f"--fold {fold}: the splits have folds 0..{len(splits) - 1}")
    for k in chosen:
        fold_dir = run_dir / f"fold_{k}"
        if (fold_dir / "model" / "medseg.json").is_file() and not force:
            continue
        create_trainer(fold_config(config, source, splits[k]["val"]), fold_dir, device=device, epochs=epochs,
                       force=True, progress=progress).fit()
    distributed.finish()
    return score_folds(run_dir, splits, cases, config.data.labels, device)


def score_folds(run_dir: Path, splits: list[dict[str, list[str]]], cases: list[Case], labels: dict[int, str], device: str) -> dict[str, Any]:
    """Out-of-fold predictions of every trained fold, scored into ``cv_summary.csv`` (and ``cv_summary.json``)."""
    dev, _ = resolve_device(device)
    by_name = {c["case"]: c for c in cases}
    rows: list[dict[str, Any]] = []
    done = []
    for k, split in enumerate(splits):
        package = run_dir / f"fold_{k}" / "model"
        if not (package / "medseg.json").is_file():
            continue
        predictor = Predictor(load_model_package(package, dev), dev)
        for name in split["val"]:
            rows += [{"model": f"fold_{k}", "fold": k, **r} for r in score_case(predictor, by_name[name], labels, run_dir / "oof")]
        done.append(k)
    summary = summary_rows(rows, "folds") if rows else []
    write_summary(run_dir / SUMMARY, rows + summary)
    result = {
        "run": str(run_dir),
        "folds_scored": done,
        "folds_total": len(splits),
        "cases_scored": len({r["case"] for r in rows}),
        "mean_dice": {r["name"]: r["dice"] for r in summary if r["case"] == "mean"},
        "summary": str(run_dir / SUMMARY),
    }
    write_json(run_dir / "cv_summary.json", result)
    return result


__all__ = ["cross_validate", "fold_splits", "kfold_splits", "read_splits", "score_case", "score_folds", "summary_rows", "write_summary"]
