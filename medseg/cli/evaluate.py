"""``medseg evaluate``: Dice, IoU, HD95, surface Dice and volume difference per case and label (or region),
mean/std over cases and global Dice pooled over cases (LiTS "Dice global"). Logic: medseg.metrics.evaluate."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import typer

from medseg.errors import MedsegInputError
from medseg.io.atomic import check_output_path, write_text
from medseg.metrics.evaluate import evaluate_run


def parse_labels(text: str | None) -> list[int] | None:
    """``"1,2,4"`` -> ``[1, 2, 4]``."""
    if not text:
        return None
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise MedsegInputError(None, f"--labels: expected comma-separated integers, got '{text}'") from None


def evaluate(
    pred: Path = typer.Option(..., "--pred", help="Predicted label map, or folder of them."),
    ref: Path = typer.Option(..., "--ref", help="Reference label map, or folder (matched by case name)."),
    out: Path = typer.Option(..., "--out", help="CSV with one row per case and label, plus mean/std rows."),
    labels: str | None = typer.Option(None, help="Labels to score, e.g. 1,2 (default: every non-zero label in any reference or prediction)."),
    tolerance: float = typer.Option(1.0, help="Surface Dice tolerance in mm (area-weighted surface Dice, as DeepMind's surface-distance)."),
    regions: str | None = typer.Option(
        None, help="Score unions of labels instead: a preset (lits = liver 1+2, tumour 2) or name=1+2,name2=2; "
        "'brats' = the nested WT, TC, ET (label maps of either BraTS convention, or WT/TC/ET mask stacks), with nesting violations."
    ),
    matched_only: bool = typer.Option(
        False, "--matched-only", help="Score only reference cases that have a prediction (default: a missing prediction scores as empty)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing CSV."),
) -> None:
    """Score predictions against references (geometry must match); adds global Dice pooled over cases."""
    check_output_path(out, force)
    result = evaluate_run(pred, ref, parse_labels(labels), regions, tolerance, matched_only)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=result.fields)
    writer.writeheader()
    writer.writerows(result.rows + result.summary)
    write_text(out, buffer.getvalue())
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    global_dice = {row["label"]: row["dice"] for row in result.summary if row["case"] == "global"}
    for row in result.summary:
        if row["case"] == "mean":
            pooled = f" (global {global_dice[row['label']]:.4f})" if row["label"] in global_dice else ""
            typer.echo(
                f"label {row['label']}: Dice {row['dice']:.4f}{pooled}  IoU {row['iou']:.4f}  HD95 {row['hd95_mm']:.2f} mm  "
                f"surface Dice {row['surface_dice_area']:.4f} (area-weighted, {tolerance:g} mm)  volume diff {row['volume_diff_ml']:+.2f} ml"
            )
    for note in result.notes:
        typer.echo(note)
    typer.echo(f"wrote {out} ({len(result.rows)} rows)")

