"""``medseg predict``: segment NIfTI/NRRD/MHA volumes with a model package, in their own geometry."""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.data.layouts import group_channels
from medseg.data.registry import load_layout
from medseg.engine.device import resolve_device
from medseg.engine.package import ModelPackage, load_model_package
from medseg.engine.progress import console, make_progress
from medseg.errors import MedsegError, MedsegInputError, MedsegOutputError
from medseg.inference.outputs import CaseTargets, predict_to_files, preflight
from medseg.inference.predictor import Predictor
from medseg.io.atomic import ensure_writable_dir, full_suffix
from medseg.io.image_io import IMAGE_SUFFIXES


def _case_targets(
    out: Path, case: str, folder_mode: bool, probabilities: Path | None, preview: Path | None, stats: Path | None,
    extras: dict[str, Path] | None = None,
) -> CaseTargets:
    extras = extras or {}
    if not folder_mode:
        return CaseTargets(out, probabilities, preview, stats, dict(extras))
    return CaseTargets(
        out / f"{case}.nii.gz",
        probabilities / f"{case}.nii.gz" if probabilities else None,
        preview / f"{case}.png" if preview else None,
        stats / f"{case}.json" if stats else None,
        {name: folder / f"{case}.nii.gz" for name, folder in extras.items()},
    )


def layout_cases(folder: Path, layout: str) -> dict[str, list[Path]]:
    """``{case: [image per modality]}`` of a folder read as a registered layout (labels, if any, ignored)."""
    try:
        return {c["case"]: [Path(p) for p in c["image"]] for c in load_layout(layout, folder)}
    except KeyError as exc:
        raise MedsegInputError(None, f"--layout: {exc.args[0]}") from None


def parse_extras(values: list[str] | None) -> dict[str, Path]:
    """``["regions=out/regions.nii.gz"]`` -> ``{"regions": Path(...)}`` (``--extra NAME=PATH``)."""
    extras: dict[str, Path] = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise MedsegInputError(None, f"--extra: expected NAME=PATH (e.g. regions=regions.nii.gz), got '{value}'")
        if name.strip() in extras:
            raise MedsegInputError(None, f"--extra: '{name.strip()}' given twice")
        extras[name.strip()] = Path(path.strip())
    return extras


def _check_extras(extras: dict[str, Path], package: ModelPackage) -> None:
    available = package.adapter.extra_outputs()
    for name in extras:
        if name not in available:
            offered = ", ".join(f"{k} ({v})" for k, v in available.items()) or "none"
            raise MedsegInputError(None, f"--extra {name}: model '{package.manifest.name}' (output kind '{package.adapter.kind}') offers no such output; available: {offered}")


def predict(
    inputs: list[Path] = typer.Option(..., "-i", "--input", help="Image file (repeat -i for each modality of one case) or a folder of cases."),
    output: Path = typer.Option(..., "-o", "--output", help="Output label file (.nii.gz, .nrrd, ...) or folder (folder input)."),
    model: Path = typer.Option(..., "-m", "--model", help="Model package folder (medseg.json + model.safetensors)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    overlap: float | None = typer.Option(None, help="Sliding-window overlap (default: the package's, usually 0.5)."),
    sw_batch_size: int | None = typer.Option(None, help="Windows per network call."),
    tta: bool | None = typer.Option(None, "--tta/--no-tta", help="Mirroring test-time augmentation."),
    probabilities: Path | None = typer.Option(None, help="Also write float probabilities (channels last), same geometry."),
    preview: Path | None = typer.Option(None, help="Also write a PNG preview (three orthogonal slices)."),
    stats: Path | None = typer.Option(None, help="Also write voxel counts and volumes (ml) per label as JSON."),
    layout: str | None = typer.Option(None, "--layout", help="Read a folder input as a registered dataset layout, e.g. brats (one folder per case: *_t1, *_t1ce, *_t2, *_flair)."),
    extra: list[str] | None = typer.Option(None, "--extra", help="Also write an output the model's head offers, as NAME=PATH (repeatable), e.g. regions=regions.nii.gz for nested BraTS models (WT, TC, ET masks, channels last); a folder with folder input."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Segment one case (or a folder of cases); outputs keep the input's shape, affine and voxel size."""
    extras = parse_extras(extra)
    folder_mode = len(inputs) == 1 and inputs[0].is_dir()
    if layout is not None and not folder_mode:
        raise MedsegInputError(inputs[0], "--layout needs one folder as input")
    if folder_mode:
        cases = group_channels(inputs[0]) if layout is None else layout_cases(inputs[0], layout)
        if not cases:
            raise MedsegInputError(inputs[0], "folder holds no images")
        ensure_writable_dir(output)
        for extra_dir in (probabilities, preview, stats, *extras.values()):
            if extra_dir is not None:
                ensure_writable_dir(extra_dir)
    else:
        for path in inputs:
            if not path.exists():
                raise MedsegInputError(path, "file not found")
            if path.is_dir():
                raise MedsegInputError(path, "is a folder; give one folder alone, or files (one -i per modality)")
        if full_suffix(output).lower() not in IMAGE_SUFFIXES:
            raise MedsegOutputError(f"{output}: output needs an image extension ({', '.join(IMAGE_SUFFIXES)})")
        for path in extras.values():
            if full_suffix(path).lower() not in IMAGE_SUFFIXES:
                raise MedsegOutputError(f"{path}: --extra output needs an image extension ({', '.join(IMAGE_SUFFIXES)})")
        cases = {"": list(inputs)}
        preflight([output, probabilities, preview, stats, *extras.values()], force)

    dev, reason = resolve_device(device)
    if device == "auto" and not quiet:
        console.print(f"device: {reason}")
    package = load_model_package(model, dev)
    _check_extras(extras, package)
    if not quiet and package.adapter.describe():
        console.print(package.adapter.describe())
    failures = 0
    with make_progress(not quiet) as bar:
        predictor = Predictor(package, dev, overlap, sw_batch_size, tta)
        task = bar.add_task("predict", total=None, status="")
        predictor.on_start = lambda total: bar.reset(task, total=total)
        predictor.on_windows = lambda n: bar.update(task, advance=n)
        for case, files in cases.items():
            targets = _case_targets(output, case, folder_mode, probabilities, preview, stats, extras)
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
