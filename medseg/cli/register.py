"""``medseg register``: options and printing; the job is medseg.inference.registration_job."""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.cli.options import DEVICE, FORCE


def register(
    fixed: Path = typer.Option(..., "--fixed", metavar="PATH", help="Fixed (reference) image: outputs are written in its geometry."),
    moving: Path = typer.Option(..., "--moving", metavar="PATH", help="Moving image, any shape, orientation and voxel size."),
    model: Path = typer.Option(..., "-m", "--model", metavar="PATH", help="Registration model package (output kind 'displacement')."),
    output: Path = typer.Option(..., "-o", "--output", metavar="PATH", help="Moved image (the moving image resampled onto the fixed grid)."),
    warp: Path | None = typer.Option(None, "--warp", metavar="PATH", help="Write the displacement field (ITK/ANTs convention: LPS mm, fixed grid)."),
    moving_label_map: Path | None = typer.Option(None, "--moving-label-map", metavar="PATH", help="Label map of the moving image, warped by nearest neighbour."),
    moved_label_map: Path | None = typer.Option(None, "--moved-label-map", metavar="PATH", help="Where the warped label map goes (needs --moving-label-map)."),
    fixed_label_map: Path | None = typer.Option(None, "--fixed-label-map", metavar="PATH", help="Label map of the fixed image: Dice before/after in the QA line."),
    inverse_warp: Path | None = typer.Option(None, "--inverse-warp", metavar="PATH", help="Write the inverse field (moving grid, moving -> fixed)."),
    qa: Path | None = typer.Option(None, "--qa", metavar="PATH", help="Write the QA numbers (folding, Dice per label, timings) as JSON."),
    device: str = DEVICE,
    force: bool = FORCE,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the QA line."),
) -> None:
    """Register MOVING onto FIXED; every output keeps the fixed image's shape, affine and voxel size.

    The displacement field d (vector NIfTI, mm) follows ITK/ANTs: the point x of the fixed image takes
    its value from x + d(x) in the moving image, components in LPS physical coordinates, so
    SimpleITK's DisplacementFieldTransform and antsApplyTransforms reproduce the moved image.
    """
    from medseg.inference.registration import qa_line
    from medseg.inference.registration_job import RegistrationRequest, register_to_files
    from medseg.progress import console

    request = RegistrationRequest(fixed, moving, model, output, warp, moving_label_map, moved_label_map, fixed_label_map, inverse_warp, qa, force)
    show_device = device == "auto" and not quiet
    result = register_to_files(request, device, on_device=lambda reason: console.print(f"device: {reason}") if show_device else None)
    if not quiet:
        for path in request.outputs():
            console.print(f"wrote {path}")
    typer.echo(qa_line(result.qa))
