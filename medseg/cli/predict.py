"""``medseg predict``: segment NIfTI/NRRD/MHA volumes with a model package, in their own geometry."""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.data.layouts import group_channels
from medseg.engine.device import resolve_device
from medseg.engine.package import load_model_package, read_manifest
from medseg.engine.progress import console, make_progress
from medseg.errors import MedsegError, MedsegInputError, MedsegOutputError
from medseg.inference.outputs import CaseTargets, predict_to_files, preflight
from medseg.inference.predictor import Predictor
from medseg.io.atomic import ensure_writable_dir, full_suffix
from medseg.io.image_io import IMAGE_SUFFIXES
from medseg.io.modalities import case_files, group_by_modality


def _case_targets(out: Path, case: str, folder_mode: bool, probabilities: Path | None, preview: Path | None, stats: Path | None) -> CaseTargets:
    if not folder_mode:
        return CaseTargets(out, probabilities, preview, stats)
    return CaseTargets(
        out / f"{case}.nii.gz",
        probabilities / f"{case}.nii.gz" if probabilities else None,
        preview / f"{case}.png" if preview else None,
        stats / f"{case}.json" if stats else None,
    )


def predict(
    inputs: list[Path] = typer.Option(..., "-i", "--input", help="Image file (repeat -i for each modality of one case) or a folder of cases (case_0000, case_0001, ... or case_<modality> files)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output label file (.nii.gz, .nrrd, ...) or folder (folder input)."),
    model: Path = typer.Option(..., "-m", "--model", help="Model package folder (medseg.json + model.safetensors)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    overlap: float | None = typer.Option(None, help="Sliding-window overlap (default: the package's, usually 0.5)."),
    sw_batch_size: int | None = typer.Option(None, help="Windows per network call."),
    tta: bool | None = typer.Option(None, "--tta/--no-tta", help="Mirroring test-time augmentation."),
    probabilities: Path | None = typer.Option(None, help="Also write float probabilities (channels last), same geometry."),
    preview: Path | None = typer.Option(None, help="Also write a PNG preview (three orthogonal slices)."),
    stats: Path | None = typer.Option(None, help="Also write voxel counts and volumes (ml) per label as JSON."),
    modalities: str | None = typer.Option(
        None, "--modalities",
        help="Modality of each -i image, comma-separated, in the order given (e.g. wat,fat,inn,opp): the images are put "
        "into the model's order. Without it, give -i in the model's order (medseg.json 'modalities'); file names that "
        "name a modality are checked against it.",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Segment one case (or a folder of cases); outputs keep the input's shape, affine and voxel size."""
    folder_mode = len(inputs) == 1 and inputs[0].is_dir()
    if folder_mode:
        if modalities is not None:
            raise MedsegInputError(inputs[0], "--modalities names the -i files of one case; a folder's files name theirs (case_fat, case_wat, ... or case_0000, case_0001, ...)")
        cases = group_by_modality(inputs[0], read_manifest(model).modalities) or group_channels(inputs[0])
        if not cases:
            raise MedsegInputError(inputs[0], "folder holds no images")
        ensure_writable_dir(output)
        for extra in (probabilities, preview, stats):
            if extra is not None:
                ensure_writable_dir(extra)
    else:
        for path in inputs:
            if not path.exists():
                raise MedsegInputError(path, "file not found")
            if path.is_dir():
                raise MedsegInputError(path, "is a folder; give one folder alone, or files (one -i per modality)")
        if full_suffix(output).lower() not in IMAGE_SUFFIXES:
            raise MedsegOutputError(f"{output}: output needs an image extension ({', '.join(IMAGE_SUFFIXES)})")
        cases = {"": list(inputs)}
        preflight([output, probabilities, preview, stats], force)

    dev, reason = resolve_device(device)
    if device == "auto" and not quiet:
        console.print(f"device: {reason}")
    package = load_model_package(model, dev)
    if not folder_mode:
        cases = {"": case_files(inputs, modalities, package.manifest.modalities)}
    failures = 0
    with make_progress(not quiet) as bar:
        predictor = Predictor(package, dev, overlap, sw_batch_size, tta)
        task = bar.add_task("predict", total=None, status="")
        predictor.on_start = lambda total: bar.reset(task, total=total)
        predictor.on_windows = lambda n: bar.update(task, advance=n)
        for case, files in cases.items():
            targets = _case_targets(output, case, folder_mode, probabilities, preview, stats)
            if folder_mode and targets.labels.exists() and not force:
                console.print(f"skip {case}: {targets.labels} exists (--force to overwrite)")
                continue
            bar.update(task, description=f"predict {case or files[0].name}")
            try:
                predict_to_files(predictor, files, targets, f"{package.manifest.name}: {case or files[0].name}")
            except MedsegError as exc:
                if not folder_mode:
                    raise
                failures += 1
                typer.echo(f"error: {exc}", err=True)
                continue
            if not quiet:
                console.print(f"wrote {targets.labels}")
    if failures:
        raise typer.Exit(1)
