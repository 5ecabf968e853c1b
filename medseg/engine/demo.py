"""The demo (``medseg demo``): phantom data -> training -> prediction of a held-out NIfTI -> evaluation."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medseg.config import bundled_pipeline, load_pipeline
from medseg.data.layouts import load_decathlon
from medseg.device import resolve_device
from medseg.engine.trainer import Trainer
from medseg.inference.batch import predict_to_files
from medseg.inference.outputs import CaseTargets
from medseg.inference.predictor import Predictor
from medseg.io.atomic import write_json
from medseg.io.image_io import read_image
from medseg.metrics.evaluate import evaluate_arrays
from medseg.model.package import load_model_package
from medseg.progress import console, make_progress, step

#: What the demo leaves in its output folder (besides data/ and checkpoints/).
OUTPUTS = ("model", "prediction.nii.gz", "preview.png", "metrics.json", "metrics.csv", "progress.png")


@dataclass
class DemoResult:
    """``rows``: one evaluation row per foreground label of the held-out case; ``metrics``: metrics.json."""

    rows: list[dict[str, Any]]
    metrics: dict[str, Any]
    label_names: dict[int, str]
    image: Path


def run_demo(out: Path, epochs: int | None = None, device: str = "auto", force: bool = False, progress: bool = True) -> DemoResult:
    """Train the bundled demo pipeline into ``out``, segment its held-out case and score it (``out/metrics.json``)."""
    start = time.perf_counter()
    config_path = bundled_pipeline("demo")
    config = load_pipeline(config_path)
    console.print(f"[bold]medseg demo[/]: pipeline {config_path}, output {out}")
    summary = Trainer(config, out, device=device, epochs=epochs, force=force, progress=progress).fit()

    test = load_decathlon(out / "data" / "dataset.json", section="medseg_test_labels")[0]
    image_path, label_path = Path(test["image"][0]), Path(test["label"])
    dev, _ = resolve_device(device)
    with step(f"loading model {out / 'model'}", progress):
        package = load_model_package(out / "model", dev)
    targets = CaseTargets(out / "prediction.nii.gz", preview=out / "preview.png")
    with make_progress(progress) as bar:
        task = bar.add_task("predict held-out case", total=None, status="")
        predictor = Predictor(
            package, dev, on_start=lambda n: bar.reset(task, total=n), on_windows=lambda n: bar.update(task, advance=n)
        )
        result = predict_to_files(predictor, [image_path], targets, f"demo: {test['case']} (held out)")
    reference, _ = read_image(label_path, "label")
    rows = evaluate_arrays(result.labels, reference, result.geometry.spacing, labels=[1, 2], case=test["case"])
    metrics = {
        "case": test["case"],
        "image": str(image_path),
        "reference": str(label_path),
        "orientation": result.geometry.orientation,
        "spacing_mm": list(result.geometry.spacing),
        "mean_foreground_dice": sum(r["dice"] for r in rows) / len(rows),
        "threads": torch.get_num_threads(),  # the Dice depends on it (pipelines/demo.yaml train.threads)
        "per_label": {config.data.labels[r["label"]]: r for r in rows},
        "training": summary,
        "prediction_seconds": result.timings,
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    json.dumps(metrics)  # fail loudly here rather than later if something is not serialisable
    write_json(out / "metrics.json", metrics)
    return DemoResult(rows, metrics, dict(config.data.labels), image_path)


__all__ = ["DemoResult", "OUTPUTS", "run_demo"]
