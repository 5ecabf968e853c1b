"""``medseg train``: run a pipeline YAML through the shared training loop."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medseg.engine import distributed
from medseg.engine.run import train_pipeline


def train(
    config: Path = typer.Argument(..., help="Pipeline YAML (see pipelines/)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: checkpoints, metrics.csv, progress.png, model/."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run folder's last checkpoint."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Override train.epochs (with --resume: extend a run)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    force: bool = typer.Option(False, "--force", help="Start afresh in an existing run folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    stage: str | None = typer.Option(None, "--stage", help="Staged pipeline (with 'stages:'): run only this stage into OUT/STAGE."),
    folds: int | None = typer.Option(None, "--folds", min=2, help="k-fold cross-validation: OUT/fold_K, OUT/splits.json, OUT/cv_summary.csv."),
    fold: int | None = typer.Option(None, "--fold", min=0, help="Train only this fold of the splits (then score the folds trained so far)."),
) -> None:
    """Train from a pipeline YAML; the best model is exported to OUT/model (OUT/<stage>/model per stage).

    Multi-GPU / multi-node: start it with torchrun (DDP; rank 0 logs, checkpoints and exports), e.g.
    ``torchrun --nproc_per_node=4 -m medseg train CONFIG -o RUN``.
    """
    if folds is not None or fold is not None:
        from medseg.engine.folds import cross_validate

        typer.echo(json.dumps(cross_validate(config, out, folds=folds, fold=fold, device=device, epochs=epochs, force=force, progress=not quiet), indent=2))
        return
    summary = train_pipeline(config, out, stage=stage, device=device, resume=resume, epochs=epochs, force=force, progress=not quiet)
    if distributed.is_main():
        typer.echo(json.dumps(summary, indent=2))
        typer.echo(f"model package: {summary['model']}")
