"""``medseg info``: options and printing; the facts are medseg.io.info.image_facts."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def info(
    file: Path = typer.Argument(..., metavar="PATH", help="Image or label map."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Print shape, voxel size, orientation code, affine, dtype and intensity range."""
    from medseg.io.info import format_facts, image_facts

    facts = image_facts(file)
    typer.echo(json.dumps(facts, indent=2) if as_json else "\n".join(format_facts(facts)))
