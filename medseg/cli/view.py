"""``medseg view``: a case viewer in one self-contained HTML file (and optionally the PNG preview figure)."""

from __future__ import annotations

from pathlib import Path

import typer


def _pairs(value: str | None, option: str) -> dict[int, str]:
    """``"1=liver,2=tumour"`` -> ``{1: "liver", 2: "tumour"}``."""
    from medseg.errors import MedsegInputError

    names: dict[int, str] = {}
    for item in (value or "").split(","):
        if item.strip():
            key, sep, name = item.partition("=")
            if not sep or not key.strip().isdigit() or not name.strip():
                raise MedsegInputError(None, f"{option}: expected VALUE=NAME pairs such as 1=liver,2=tumour, got '{item.strip()}'")
            names[int(key)] = name.strip()
    return names


def _window(value: str | None) -> tuple[float, float] | None:
    from medseg.errors import MedsegInputError

    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value.split(","))
    except ValueError:
        raise MedsegInputError(None, f"--window: expected LOW,HIGH such as -160,240, got '{value}'") from None
    if hi <= lo:
        raise MedsegInputError(None, f"--window {value}: HIGH must exceed LOW")
    return lo, hi


def view(
    image: Path = typer.Argument(..., metavar="PATH", help="Image file (NIfTI, NRRD, MHA) or DICOM series folder."),
    output: Path = typer.Option(..., "-o", "--output", metavar="PATH", help="HTML file to write (self-contained: opens offline in any browser)."),
    labels: Path | None = typer.Option(None, "--label-map", metavar="PATH", help="Label map on the image's grid (e.g. a medseg predict output)."),
    report: Path | None = typer.Option(None, "--report", metavar="PATH", help="A medseg predict --report JSON: label names, warnings and provenance."),
    names: str | None = typer.Option(None, "--names", metavar="TEXT", help="Label names as VALUE=NAME pairs, e.g. 1=liver,2=tumour (default: from --report)."),
    window: str | None = typer.Option(None, "--window", metavar="TEXT", help="Intensity window LOW,HIGH (default: CT soft tissue -160,240 for CT, else 1st-99th percentile)."),
    modality: str | None = typer.Option(None, "--modality", metavar="TEXT", help="CT or MR: chooses the default window (default: guessed from the values)."),
    opacity: float = typer.Option(0.5, "--opacity", min=0.0, max=1.0, metavar="FLOAT", help="Initial label opacity (a slider in the page)."),
    neurological: bool = typer.Option(False, "--neurological", help="Start in neurological convention (patient's left on the screen's left)."),
    png: Path | None = typer.Option(None, "--png", metavar="PATH", help="Also write the PNG preview figure."),
    layout: str = typer.Option("orthogonal", "--layout", metavar="TEXT", help="PNG: orthogonal (three planes) or axial (a row of axial slices per label)."),
    outline: bool = typer.Option(False, "--outline", help="PNG: label outlines instead of a semi-transparent fill."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
) -> None:
    """Write a self-contained HTML case viewer of IMAGE with its labels: multiplanar and 3D views, label
    opacity, legend with volumes (ml), warnings and provenance of a predict report."""
    from medseg.errors import MedsegInputError, MedsegOutputError
    from medseg.inference.viewer import view_files

    if modality is not None and modality.upper() not in ("CT", "MR"):
        raise MedsegInputError(None, f"--modality {modality}: expected CT or MR")
    if layout not in ("orthogonal", "axial"):
        raise MedsegInputError(None, f"--layout {layout}: expected orthogonal or axial")
    if png is not None and png.suffix.lower() != ".png":
        raise MedsegOutputError(f"{png}: --png writes a .png file")
    if output.suffix.lower() not in (".html", ".htm"):
        raise MedsegOutputError(f"{output}: the viewer is an .html file")
    options = {"window": _window(window), "modality": modality and modality.upper(), "opacity": opacity, "radiological": not neurological}
    png_options = {"layout": layout, "style": "outline" if outline else "fill"}
    written = view_files(image, output, labels, report, _pairs(names, "--names") or None, force, png, png_options, **options)
    typer.echo("wrote " + " and ".join(str(p) for p in written))
