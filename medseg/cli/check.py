"""``medseg check``: options and printing; the checks are medseg.data.checks.check_paths."""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.cli.options import parse_labels


def check(
    paths: list[Path] = typer.Argument(..., metavar="PATH", help="Images, or dataset folders / dataset.json (images and labels checked in pairs)."),
    label_map: Path | None = typer.Option(None, "--label-map", metavar="PATH", help="Label map belonging to a single image PATH."),
    labels: str | None = typer.Option(None, "--labels", metavar="LIST", help="Label values a label map may hold, e.g. 0,1,2."),
    pipeline: Path | None = typer.Option(None, "--pipeline", metavar="PATH", help="Pipeline YAML whose data.labels are the label values a label map may hold."),
) -> None:
    """Report every problem found, one line each with its fix; exit 1 if there is any."""
    from medseg.data.checks import check_paths

    allowed = parse_labels(labels)
    if pipeline is not None:
        from medseg.config import load_pipeline

        allowed = sorted(load_pipeline(pipeline).data.labels)
    report = check_paths(paths, label_map, allowed)
    for problem in report.problems:
        typer.echo(str(problem))
    if report.problems:
        typer.echo(f"{len(report.problems)} problem(s) in {report.checked} file(s)", err=True)
        raise typer.Exit(1)
    typer.echo(f"ok: {report.checked} file(s) checked, no problems")
