"""``medseg selfcheck``: options and printing; the checks are medseg.inference.selfcheck."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from medseg.cli.options import DEVICE


def selfcheck(
    models: list[Path] | None = typer.Option(None, "-m", "--model", metavar="PATH", help="Model package or folder of packages (repeatable; default $MEDSEG_MODELS)."),
    device: str = DEVICE,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing; the exit code says it all (HEALTHCHECK)."),
    allow_empty: bool = typer.Option(False, "--allow-empty", help="Pass with no model package (an installation without models; by default that is a problem)."),
) -> None:
    """Check versions, the device, scratch space and every model package; exit 1 on any problem.

    Prints the library versions, the device --device resolves to and why, the user it runs as, whether
    the temp folder is writable, which optional outputs are available (DICOM SEG, OpenVINO, ...), and
    loads every model package (default: those under $MEDSEG_MODELS), running one forward pass of a patch
    of zeros through each. No model package at all fails, unless --allow-empty.
    """
    from medseg.inference.selfcheck import format_selfcheck
    from medseg.inference.selfcheck import selfcheck as run_selfcheck

    result = run_selfcheck(models or [], device, allow_empty)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    elif not quiet:
        sys.stdout.write(format_selfcheck(result))
    if result["problems"]:
        raise typer.Exit(1)
