"""``medseg info``: options and printing; the facts are medseg.io.info.image_facts."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def info(
    file: Path = typer.Argument(..., metavar="PATH", help="Image or label map, a DICOM series folder, a folder of cases or a list file (what predict takes)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (a list for several files)."),
) -> None:
    """Print shape, voxel size, orientation code, affine, dtype and intensity range; for a label map its
    label values with voxel counts and volumes (ml); for a DICOM folder the series read."""
    from medseg.data.inputs import cases_of
    from medseg.io.info import format_facts, image_facts

    facts = [image_facts(path, case.dicom) for case in cases_of(file) for path in case.paths]
    if as_json:
        typer.echo(json.dumps(facts[0] if len(facts) == 1 else facts, indent=2))
    else:
        typer.echo("\n\n".join("\n".join(format_facts(f)) for f in facts))
