"""``medseg demo``: phantom data -> training -> prediction of a held-out NIfTI -> evaluation, in one command."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import typer
from rich.table import Table

from medseg.config import bundled_pipeline, load_pipeline
from medseg.data.layouts import load_decathlon
from medseg.engine.device import resolve_device
from medseg.model.package import load_model_package
from medseg.progress import console, make_progress
from medseg.engine.trainer import Trainer
from medseg.inference.batch import predict_to_files
from medseg.inference.outputs import CaseTargets
from medseg.inference.predictor import Predictor
from medseg.io.atomic import write_json
from medseg.io.image_io import read_image
from medseg.metrics.evaluate import evaluate_arrays


def demo(
    out: Path = typer.Option(Path("medseg-demo"), "--out", "-o", help="Output folder."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Override the demo's training epochs."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder's run."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train a small 3D UNet on CT phantoms and segment a held-out case (a few minutes on a CPU)."""
    start = time.perf_counter()
    config_path = bundled_pipeline("demo")
    config = load_pipeline(config_path)
    console.print(f"[bold]medseg demo[/]: pipeline {config_path}, output {out}")
    summary = Trainer(config, out, device=device, epochs=epochs, force=force, progress=not quiet).fit()

    test = load_decathlon(out / "data" / "dataset.json", section="medseg_test_labels")[0]
    image_path, label_path = Path(test["image"][0]), Path(test["label"])
    dev, _ = resolve_device(device)
    package = load_model_package(out / "model", dev)
    targets = CaseTargets(out / "prediction.nii.gz", preview=out / "preview.png")
    with make_progress(not quiet) as bar:
        task = bar.add_task("predict held-out case", total=None, status="")
        predictor = Predictor(
            package, dev, on_start=lambda n: bar.reset(task, total=n), on_windows=lambda n: bar.update(task, advance=n)
        )
        result = predict_to_files(predictor, [image_path], targets, f"demo: {test['case']} (held out)")
    reference, _ = read_image(label_path, "label")
    rows = evaluate_arrays(result.labels, reference, result.geometry.spacing, labels=[1, 2], case=test["case"])
    mean_dice = sum(r["dice"] for r in rows) / len(rows)
    metrics = {
        "case": test["case"],
        "image": str(image_path),
        "reference": str(label_path),
        "orientation": result.geometry.orientation,
        "spacing_mm": list(result.geometry.spacing),
        "mean_foreground_dice": mean_dice,
        "per_label": {config.data.labels[r["label"]]: r for r in rows},
        "training": summary,
        "prediction_seconds": result.timings,
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    write_json(out / "metrics.json", metrics)

    table = Table(title=f"held-out case {test['case']} ({result.geometry.orientation}, {' x '.join(f'{s:.2f}' for s in result.geometry.spacing)} mm)")
    for column in ("label", "Dice", "HD95 (mm)", "volume pred / ref (ml)"):
        table.add_column(column)
    for r in rows:
        table.add_row(config.data.labels[r["label"]], f"{r['dice']:.3f}", f"{r['hd95_mm']:.1f}", f"{r['volume_pred_ml']:.1f} / {r['volume_ref_ml']:.1f}")
    out_console = console.__class__(file=sys.stdout, highlight=False)
    out_console.print(table)
    out_console.print(f"mean foreground Dice: [bold]{mean_dice:.3f}[/]   total time: {metrics['total_seconds']:.0f} s")
    for name in ("model", "prediction.nii.gz", "preview.png", "metrics.json", "metrics.csv", "progress.png"):
        out_console.print(f"  {out / name}")
    command = ["medseg", "predict", "-i", str(image_path), "-o", "prediction.nii.gz", "-m", str((out / "model").resolve())]
    out_console.print("reuse the model with:")
    typer.echo(shlex.join(command))
    json.dumps(metrics)  # fail loudly here rather than later if something is not serialisable
