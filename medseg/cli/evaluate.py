"""``medseg evaluate``: options and printing; scoring is medseg.metrics.evaluate.evaluate_run."""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.cli.options import FORCE, parse_labels


def evaluate(
    pred: Path = typer.Option(..., "-i", "--input", metavar="PATH", help="Predicted label map, or folder of them."),
    ref: Path = typer.Option(..., "-r", "--reference", metavar="PATH", help="Reference label map, or folder (matched by case name)."),
    out: Path = typer.Option(..., "-o", "--output", metavar="PATH", help="CSV with one row per case and label, plus mean/std rows."),
    labels: str | None = typer.Option(None, "--labels", metavar="LIST", help="Label values to score, e.g. 1,2 (default: every non-zero label in any reference or prediction)."),
    tolerance: float = typer.Option(1.0, "--tolerance", min=0.0, metavar="FLOAT", help="Surface Dice tolerance in mm (area-weighted surface Dice, as DeepMind's surface-distance)."),
    regions: str | None = typer.Option(
        None, "--regions", metavar="TEXT",
        help="Score unions of labels instead: a preset (lits = liver 1+2, tumour 2) or name=1+2,name2=2; "
        "'brats' = the nested WT, TC, ET (label maps of either BraTS convention, or WT/TC/ET mask stacks), with nesting violations.",
    ),
    matched_only: bool = typer.Option(
        False, "--matched-only", help="Score only reference cases that have a prediction (default: a missing prediction scores as empty)."
    ),
    force: bool = FORCE,
) -> None:
    """Score predictions against references (geometry must match); adds global Dice pooled over cases.

    Dice, IoU, HD95, surface Dice and volume difference per case and label (or region), mean/std over cases
    and global Dice pooled over cases (LiTS "Dice global").
    """
    from medseg.io.atomic import check_output_path, write_text
    from medseg.metrics.evaluate import evaluate_run

    check_output_path(out, force)
    result = evaluate_run(pred, ref, parse_labels(labels), regions, tolerance, matched_only)
    write_text(out, result.csv_text())
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    for line in result.mean_lines(tolerance) + result.notes:
        typer.echo(line)
    typer.echo(f"wrote {out} ({len(result.rows)} rows)")
