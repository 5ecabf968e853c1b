"""``medseg register``: deformable registration of a moving image onto a fixed one with a model package."""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.engine.device import resolve_device
from medseg.model.package import load_model_package
from medseg.progress import console
from medseg.errors import MedsegInputError, MedsegOutputError
from medseg.inference.outputs import OutputSet, preflight
from medseg.inference.registration import Registrar, qa_line
from medseg.io.atomic import full_suffix
from medseg.io.image_io import IMAGE_SUFFIXES


def _check_inputs(*paths: Path | None) -> None:
    for path in paths:
        if path is not None and path.is_dir():
            raise MedsegInputError(path, "is a folder, expected an image file")


def _check_outputs(*paths: Path | None) -> None:
    for path in paths:
        if path is not None and full_suffix(path).lower() not in IMAGE_SUFFIXES:
            raise MedsegOutputError(f"{path}: output needs an image extension ({', '.join(IMAGE_SUFFIXES)})")


def register(
    fixed: Path = typer.Option(..., "--fixed", help="Fixed (reference) image: outputs are written in its geometry."),
    moving: Path = typer.Option(..., "--moving", help="Moving image, any shape, orientation and voxel size."),
    model: Path = typer.Option(..., "-m", "--model", help="Registration model package (output kind 'displacement')."),
    output: Path = typer.Option(..., "-o", "--output", help="Moved image (the moving image resampled onto the fixed grid)."),
    warp: Path | None = typer.Option(None, "--warp", help="Write the displacement field (ITK/ANTs convention: LPS mm, fixed grid)."),
    labels: Path | None = typer.Option(None, "--labels", help="Label map of the moving image, warped by nearest neighbour."),
    labels_out: Path | None = typer.Option(None, "--labels-out", help="Where the warped labels go (needs --labels)."),
    fixed_labels: Path | None = typer.Option(None, "--fixed-labels", help="Label map of the fixed image: Dice before/after in the QA line."),
    inverse_warp: Path | None = typer.Option(None, "--inverse-warp", help="Write the inverse field (moving grid, moving -> fixed)."),
    report: Path | None = typer.Option(None, "--report", help="Write the QA numbers (folding, Dice per label, timings) as JSON."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the QA line."),
) -> None:
    """Register MOVING onto FIXED; every output keeps the fixed image's shape, affine and voxel size.

    The displacement field d (vector NIfTI, mm) follows ITK/ANTs: the point x of the fixed image takes
    its value from x + d(x) in the moving image, components in LPS physical coordinates, so
    SimpleITK's DisplacementFieldTransform and antsApplyTransforms reproduce the moved image.
    """
    if labels_out is not None and labels is None:
        raise MedsegInputError(labels_out, "--labels-out needs --labels (the moving image's label map)")
    _check_inputs(fixed, moving, labels, fixed_labels)
    _check_outputs(output, warp, labels_out, inverse_warp)
    preflight([output, warp, labels_out, inverse_warp, report], force)
    dev, reason = resolve_device(device)
    if device == "auto" and not quiet:
        console.print(f"device: {reason}")
    registrar = Registrar(load_model_package(model, dev), dev)
    result = registrar.register_files(fixed, moving, labels, fixed_labels, inverse=inverse_warp is not None)
    fixed_geometry, moving_geometry = result.fixed_geometry, result.moving_geometry
    with OutputSet().transaction() as out:
        out.image(output, result.moved, fixed_geometry, "image")
        if warp is not None:
            out.image(warp, result.displacement, fixed_geometry, "displacement")
        if labels_out is not None:
            out.image(labels_out, result.moved_labels, fixed_geometry, "label")
        if inverse_warp is not None:
            out.image(inverse_warp, result.inverse_displacement, moving_geometry, "displacement")
        if report is not None:
            out.json(report, {"fixed": str(fixed), "moving": str(moving), "model": str(model), **result.qa, "timings_s": result.timings})
    if not quiet:
        for path in (output, warp, labels_out, inverse_warp, report):
            if path is not None:
                console.print(f"wrote {path}")
    typer.echo(qa_line(result.qa))
