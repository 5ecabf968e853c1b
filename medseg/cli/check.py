"""``medseg check``: preflight validation of images, label maps and datasets."""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.cli.evaluate import parse_labels
from medseg.config import load_pipeline
from medseg.data.layouts import discover_cases
from medseg.io.checks import Problem, check_image, check_label
from medseg.io.image_io import is_image_file


def check(
    paths: list[Path] = typer.Argument(..., help="Images, or dataset folders / dataset.json (images and labels checked in pairs)."),
    label: Path | None = typer.Option(None, "--label", help="Label map belonging to a single image PATH."),
    labels: str | None = typer.Option(None, "--labels", help="Allowed label values, e.g. 0,1,2."),
    config: Path | None = typer.Option(None, "--config", help="Pipeline YAML whose data.labels are the allowed values."),
) -> None:
    """Report every problem found, one line each with its fix; exit 1 if there is any."""
    allowed = parse_labels(labels)
    if config is not None:
        allowed = sorted(load_pipeline(config).data.labels)
    problems: list[Problem] = []
    checked = 0
    for path in paths:
        if path.is_dir() or path.suffix == ".json":
            for case in discover_cases(path):
                geometry = None
                for image in case["image"]:
                    found, g = check_image(image, allow_channels=len(case["image"]) == 1)
                    problems += found
                    geometry = geometry or g
                    checked += 1
                if case["label"]:
                    problems += check_label(case["label"], allowed, geometry)
                    checked += 1
            continue
        if not is_image_file(path) and not path.exists():
            problems.append(Problem(str(path), "file not found", "check the path"))
            continue
        found, geometry = check_image(path)
        problems += found
        checked += 1
        if label is not None:
            problems += check_label(label, allowed, geometry)
            checked += 1
    for problem in problems:
        typer.echo(str(problem))
    if problems:
        typer.echo(f"{len(problems)} problem(s) in {checked} file(s)", err=True)
        raise typer.Exit(1)
    typer.echo(f"ok: {checked} file(s) checked, no problems")
