"""``medseg evaluate``: Dice, IoU, HD95, surface Dice and volume difference per case and label (or region),
mean/std over cases and global Dice pooled over cases (LiTS "Dice global")."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import typer

from medseg.errors import MedsegInputError
from medseg.io.atomic import check_output_path, write_text
from medseg.metrics.evaluate import METRICS, match_cases, read_pair, summarize
from medseg.metrics.region_evaluate import FIELDS as REGION_FIELDS
from medseg.metrics.region_evaluate import evaluate_region_cases, summarize_regions
from medseg.metrics.regions import PooledCounts, evaluate_case, parse_regions


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
    labels: str | None = typer.Option(None, help="Labels to score, e.g. 1,2 (default: every non-zero label in either image)."),
    tolerance: float = typer.Option(1.0, help="Surface Dice tolerance in mm."),
    regions: str | None = typer.Option(
        None, help="Score unions of labels instead: a preset (lits = liver 1+2, tumour 2) or name=1+2,name2=2; "
        "'brats' = the nested WT, TC, ET (label maps of either BraTS convention, or WT/TC/ET mask stacks), with nesting violations."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing CSV."),
) -> None:
    """Score predictions against references (geometry must match); adds global Dice pooled over cases."""
    check_output_path(out, force)
    if regions == "brats":
        if labels:
            raise MedsegInputError(None, "--labels and --regions exclude each other")
        _evaluate_regions(pred, ref, out, regions, tolerance)
        return
    wanted = parse_labels(labels)
    region_map = parse_regions(regions) if regions else None
    pooled = PooledCounts()
    rows = []
    for case, p, r in match_cases(pred, ref):
        pred_arr, ref_arr, geometry = read_pair(p, r)
        rows += evaluate_case(pred_arr, ref_arr, geometry.spacing, wanted, region_map, tolerance, case, pooled)
    summary = summarize(rows) + pooled.rows()
    _write_csv(out, rows + summary, ["case", "label", *METRICS])
    global_dice = {row["label"]: row["dice"] for row in summary if row["case"] == "global"}
    for row in summary:
        if row["case"] == "mean":
            typer.echo(
                f"label {row['label']}: Dice {row['dice']:.4f} (global {global_dice[row['label']]:.4f})  IoU {row['iou']:.4f}  "
                f"HD95 {row['hd95_mm']:.2f} mm  surface Dice {row['surface_dice']:.4f}  volume diff {row['volume_diff_ml']:+.2f} ml"
            )
    typer.echo(f"wrote {out} ({len(rows)} rows)")


def _evaluate_regions(pred: Path, ref: Path, out: Path, region_set: str, tolerance: float) -> None:
    rows, notes = evaluate_region_cases(match_cases(pred, ref), region_set, tolerance)
    summary = summarize_regions(rows)
    _write_csv(out, rows + summary, list(REGION_FIELDS))
    for row in summary:
        if row["case"] == "mean":
            typer.echo(
                f"{row['label']}: Dice {row['dice']:.4f}  HD95 {row['hd95_mm']:.2f} mm  surface Dice {row['surface_dice']:.4f}  "
                f"volume diff {row['volume_diff_ml']:+.2f} ml"
            )
    for note in notes:
        typer.echo(note)
    typer.echo(f"wrote {out} ({len(rows)} rows)")


def _write_csv(out: Path, rows: list[dict], fields: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_text(out, buffer.getvalue())
