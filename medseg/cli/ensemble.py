"""``medseg ensemble``: one model package from the folds of a cross-validation run."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def ensemble(
    run: Path = typer.Argument(..., metavar="PATH", help="Run folder of `medseg train --folds` (fold_K/model, splits.json, cv_summary.csv)."),
    out: Path = typer.Option(..., "--output", "-o", metavar="PATH", help="Model package folder to write."),
    device: str = typer.Option("auto", metavar="TEXT", help="Where the comparison with the folds runs."),
    force: bool = typer.Option(False, "--force", help="Replace an existing package folder."),
    no_compare: bool = typer.Option(False, "--no-compare", help="Skip scoring the ensemble against the mean fold."),
) -> None:
    """Average the fold models' probabilities in one package; score it against the mean fold (cv_summary)."""
    from medseg.engine.fold_ensemble import build_ensemble, compare_with_folds

    package = build_ensemble(run, out, force=force)
    if not no_compare:
        typer.echo(json.dumps(compare_with_folds(run, package, device), indent=2))
    typer.echo(f"model package: {package}")
