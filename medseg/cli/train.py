"""``medseg train``: options and printing; the run itself is medseg.engine.run.train_pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medseg.cli.options import DEVICE, QUIET, parse_sets


def train(
    config: Path = typer.Argument(..., metavar="PIPELINE", help="Pipeline YAML (see pipelines/)."),
    output: Path = typer.Option(..., "-o", "--output", metavar="PATH", help="Run folder: checkpoints, metrics.csv, progress.png, model/."),
    data: Path | None = typer.Option(None, "--data", metavar="PATH", help="Train on this dataset instead of the pipeline's: a Decathlon dataset.json or a folder with imagesTr/ + labelsTr/."),
    set_: list[str] | None = typer.Option(None, "--set", metavar="KEY=VALUE", help="Change one pipeline key, e.g. --set train.lr=0.001 (repeatable; the value is read as YAML and checked by the pipeline schema)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run folder's last checkpoint."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, metavar="N", help="Override train.epochs (with --resume: extend a run)."),
    device: str = DEVICE,
    force: bool = typer.Option(False, "--force", help="Start afresh in an existing run folder."),
    quiet: bool = QUIET,
    stage: str | None = typer.Option(None, "--stage", metavar="NAME", help="Staged pipeline (with 'stages:'): run only this stage into OUTPUT/NAME."),
    folds: int | None = typer.Option(None, "--folds", min=2, metavar="K", help="k-fold cross-validation: OUTPUT/fold_K, OUTPUT/splits.json, OUTPUT/cv_summary.csv."),
    fold: int | None = typer.Option(None, "--fold", min=0, metavar="K", help="Train only this fold of the splits (then score the folds trained so far)."),
) -> None:
    """Train from a pipeline YAML; the best model is exported to OUTPUT/model (OUTPUT/STAGE/model per stage).

    Multi-GPU / multi-node: start it with torchrun (DDP; rank 0 logs, checkpoints and exports), e.g.
    torchrun --nproc_per_node=4 -m medseg train PIPELINE -o RUN.
    """
    from medseg.device import is_main
    from medseg.engine.interrupt import INTERRUPTED_EXIT, TrainingInterrupted, resume_command
    from medseg.engine.run import pipeline_overrides, train_pipeline
    from medseg.progress import set_quiet

    set_quiet(quiet)
    overrides = pipeline_overrides(parse_sets(set_), data)
    try:
        if folds is not None or fold is not None:
            from medseg.engine.folds import cross_validate

            result = cross_validate(config, output, folds=folds, fold=fold, device=device, epochs=epochs, force=force, progress=not quiet, overrides=overrides)
            typer.echo(json.dumps(result, indent=2))
            return
        summary = train_pipeline(
            config, output, stage=stage, overrides=overrides, device=device, resume=resume, epochs=epochs, force=force, progress=not quiet
        )
    except TrainingInterrupted as stopped:
        cont = f"{stopped.run_dir} keeps the checkpoint" if folds is not None or fold is not None else f"continue with: {resume_command()}"
        typer.echo(f"{stopped}; {cont}", err=True)
        raise typer.Exit(INTERRUPTED_EXIT) from None
    if is_main():
        typer.echo(json.dumps(summary, indent=2))
        typer.echo(f"model package: {summary['model']}")
