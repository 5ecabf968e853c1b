"""``medseg predict``: segment NIfTI/NRRD/MHA volumes or DICOM series with a model package, in their own geometry.

One case: ``-i`` image files (one per modality) or a DICOM series folder; ``-o`` a label file, a ``.dcm``
DICOM SEG, or a folder. Batch: ``-i`` a folder of cases (image files and/or DICOM series sub-folders) or
a list file, ``-o`` a folder; outputs that exist are skipped (``--force`` redoes them), a failing case is
logged and the batch goes on, ``summary.csv`` lists every case, and the exit code is 1 if any case failed.
``--layout NAME`` reads a folder as a registered dataset layout (e.g. BraTS case folders); ``--extra NAME=PATH``
writes an output the model's head offers (e.g. a nested BraTS model's WT/TC/ET masks).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import replace
from pathlib import Path

import typer

from medseg.engine import distributed
from medseg.engine.device import resolve_device
from medseg.data.registry import LAYOUTS, load_layout
from medseg.model.package import ModelPackage, describe, load_model_package, read_manifest
from medseg.progress import console, make_progress
from medseg.errors import MedsegInputError, MedsegOutputError
from medseg.inference.batch import (
    OUTPUT_FORMATS,
    CaseRun,
    RunContext,
    requested_paths,
    run_cases,
    targets_for_file,
    targets_in_folder,
)
from medseg.inference.cases import CaseSource, batch_cases, is_list_file, single_case
from medseg.inference.outputs import CaseTargets, preflight
from medseg.inference.predictor import Predictor
from medseg.io.atomic import ensure_writable_dir, full_suffix
from medseg.io.dicom import is_dicom_folder
from medseg.io.image_io import IMAGE_SUFFIXES
from medseg.io.modalities import case_files

#: Where ``-m NAME`` looks for a package named NAME when NAME is not a path (the Docker image sets /models).
MODELS_ENV = "MEDSEG_MODELS"


def resolve_model(model: Path) -> Path:
    """``-m`` as given when it exists, else ``$MEDSEG_MODELS/NAME``."""
    root = os.environ.get(MODELS_ENV)
    if not model.exists() and root and len(model.parts) == 1 and (Path(root) / model).is_dir():
        return Path(root) / model
    return model


def _single_output_kind(output: Path, output_format: str | None) -> tuple[str, bool]:
    """``(format, output is a folder)`` for one case; a ``.dcm`` output means DICOM SEG."""
    suffix = full_suffix(output).lower()
    is_file = suffix in IMAGE_SUFFIXES or suffix == ".dcm"
    fmt = output_format or ("dicom-seg" if suffix == ".dcm" else "nifti")
    if is_file and output.is_dir():
        raise MedsegOutputError(f"{output}: is a folder, but its name looks like a file")
    if not is_file and output.exists() and not output.is_dir():
        raise MedsegOutputError(f"{output}: output needs an image extension ({', '.join(IMAGE_SUFFIXES)}), .dcm, or a folder")
    if is_file and fmt == "dicom-seg" and suffix != ".dcm":
        raise MedsegOutputError(f"{output}: --output-format dicom-seg writes a .dcm file (or give a folder)")
    if is_file and fmt == "nifti" and suffix == ".dcm":
        raise MedsegOutputError(f"{output}: a .dcm output is a DICOM SEG; use --output-format dicom-seg or both")
    return fmt, not is_file


def layout_cases(folder: Path, layout: str) -> list[CaseSource]:
    """Cases of a folder read as a registered layout (one image per modality; labels, if any, ignored)."""
    if not folder.is_dir():
        raise MedsegInputError(folder, "--layout needs one folder as input")
    if layout not in LAYOUTS:
        raise MedsegInputError(None, LAYOUTS.unknown_message(layout, option="--layout"))
    cases = [CaseSource(c["case"], tuple(Path(p) for p in c["image"])) for c in load_layout(layout, folder)]
    if not cases:
        raise MedsegInputError(folder, f"no cases of layout '{layout}' found")
    return cases


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
    available = package.head.extra_outputs()
    for name in extras:
        if name not in available:
            offered = ", ".join(f"{k} ({v})" for k, v in available.items()) or "none"
            raise MedsegInputError(None, f"--extra {name}: model '{package.manifest.name}' (output kind '{package.head.kind}') offers no such output; available: {offered}")


def _with_extras(targets: CaseTargets, extras: dict[str, Path]) -> CaseTargets:
    return dataclasses.replace(targets, extras=dict(extras)) if extras else targets


def predict(
    inputs: list[Path] = typer.Option(..., "-i", "--input", help="Image file (repeat -i per modality), a DICOM series folder, a folder of cases, or a list file (.txt/.csv)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output label file (.nii.gz, .nrrd, ...), DICOM SEG (.dcm), or folder (always a folder in batch mode)."),
    model: Path = typer.Option(..., "-m", "--model", help=f"Model package folder, or the name of a package under ${MODELS_ENV}."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    overlap: float | None = typer.Option(None, help="Sliding-window overlap (default: the package's, usually 0.5)."),
    sw_batch_size: int | None = typer.Option(None, help="Windows per network call."),
    tta: bool | None = typer.Option(None, "--tta/--no-tta", help="Mirroring test-time augmentation."),
    output_format: str | None = typer.Option(None, "--output-format", help="nifti, dicom-seg or both (default: nifti; dicom-seg for a .dcm output). DICOM SEG needs a DICOM input."),
    series_uid: str | None = typer.Option(None, "--series-uid", help="Which series of a DICOM folder (default: the one with the most slices)."),
    report: bool | None = typer.Option(None, "--report/--no-report", help="Per-case JSON report and PNG preview (default: on in batch mode)."),
    uncertainty: bool = typer.Option(False, "--uncertainty", help="Also write a voxel-wise entropy map (case.entropy.nii.gz); its per-label means go into the report."),
    probabilities: Path | None = typer.Option(None, help="Also write float probabilities (channels last), same geometry (a folder in batch mode)."),
    preview: Path | None = typer.Option(None, help="Also write a PNG preview (three orthogonal slices) (a folder in batch mode)."),
    stats: Path | None = typer.Option(None, help="Also write voxel counts and volumes (ml) per label as JSON (a folder in batch mode)."),
    modalities: str | None = typer.Option(
        None, "--modalities",
        help="Modality of each -i image, comma-separated, in the order given (e.g. wat,fat,inn,opp): the images are put "
        "into the model's order. Without it, give -i in the model's order (medseg.json 'modalities'); file names that "
        "name a modality are checked against it.",
    ),
    layout: str | None = typer.Option(None, "--layout", help="Read a folder input as a registered dataset layout, e.g. brats (one folder per case: *_t1, *_t1ce, *_t2, *_flair)."),
    extra: list[str] | None = typer.Option(None, "--extra", help="Also write an output the model's head offers, as NAME=PATH (repeatable), e.g. regions=regions.nii.gz for nested BraTS models (WT, TC, ET masks, channels last); a folder in batch mode."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    plan: bool = typer.Option(False, "--plan", help="Print the memory plan of each case (from the headers) and exit."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the network (the first window batch pays the compile time)."),
    backend: str = typer.Option("auto", "--backend", help="auto, torch, openvino or onnxruntime: what runs the network (auto: OpenVINO on the CPU when installed, else PyTorch); see README 'Speed'."),
) -> None:
    """Segment one case or a batch of cases; outputs keep the input's shape, affine and voxel size.

    Under torchrun, a batch of cases is split across the processes (one GPU each; summary.rankN.csv per rank).
    """
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        raise MedsegOutputError(f"--output-format {output_format}: expected one of {', '.join(OUTPUT_FORMATS)}")
    extras = parse_extras(extra)
    folder_extras = lambda c: {n: folder / f"{c.name}.nii.gz" for n, folder in extras.items()}  # noqa: E731
    first = inputs[0]
    if layout is not None and len(inputs) != 1:
        raise MedsegInputError(first, "--layout needs one folder as input")
    batch = len(inputs) == 1 and ((first.is_dir() and not is_dicom_folder(first)) or is_list_file(first) or layout is not None)
    if batch:
        if series_uid is not None:
            raise MedsegInputError(first, "--series-uid selects a series of one DICOM folder; it does not apply to a batch")
        if modalities is not None:
            raise MedsegInputError(first, "--modalities names the -i files of one case; in a batch, file names give the modality (case_fat, case_wat, ... or case_0000, case_0001, ...)")
        cases = batch_cases(first, read_manifest(resolve_model(model)).modalities) if layout is None else layout_cases(first, layout)
        fmt, report = output_format or "nifti", True if report is None else report
        ensure_writable_dir(output)
        for extra_dir in (probabilities, preview, stats, *extras.values()):
            if extra_dir is not None:
                ensure_writable_dir(extra_dir)
        targets = lambda case: _with_extras(targets_in_folder(output, case.name, fmt, report, uncertainty, probabilities, preview, stats), folder_extras(case))  # noqa: E731
    else:
        case = single_case(list(inputs))
        if case.dicom and modalities is not None:
            raise MedsegInputError(first, "--modalities names image files; a DICOM series folder is one modality")
        cases = [case]
        fmt, to_folder = _single_output_kind(output, output_format)
        report = bool(report)
        if to_folder:
            ensure_writable_dir(output)
            for extra_dir in extras.values():
                ensure_writable_dir(extra_dir)
            targets = lambda c: _with_extras(targets_in_folder(output, c.name, fmt, report, uncertainty), folder_extras(c))  # noqa: E731
        else:
            for path in extras.values():
                if full_suffix(path).lower() not in IMAGE_SUFFIXES:
                    raise MedsegOutputError(f"{path}: --extra output needs an image extension ({', '.join(IMAGE_SUFFIXES)})")
            targets = lambda c: _with_extras(targets_for_file(output, fmt, report, uncertainty, probabilities, preview, stats), extras)  # noqa: E731
        if fmt != "nifti" and not case.dicom:
            raise MedsegInputError(case.paths[0], "DICOM SEG output needs a DICOM series folder as input (use --output-format nifti)")
        preflight(list(requested_paths(targets(case))), force)
    if fmt != "nifti":
        from medseg.io.dicom_write import require_pydicom

        require_pydicom()

    if batch:
        cases = distributed.shard(cases)  # under torchrun: every WORLD_SIZE-th case from RANK
    dev, reason = resolve_device(device)
    dev = distributed.local_device(dev)
    if device == "auto" and not quiet:
        console.print(f"device: {reason}")
    package = load_model_package(resolve_model(model), dev)
    if not batch and not cases[0].dicom:  # one case: files into the model's modality order (checked by name)
        cases = [replace(cases[0], paths=tuple(case_files(cases[0].paths, modalities, package.manifest.modalities)))]
    _check_extras(extras, package)
    if not quiet and package.head.describe():
        console.print(package.head.describe())
    with make_progress(not quiet) as bar:
        predictor = Predictor(package, dev, overlap, sw_batch_size, tta, compile=compile, backend=backend)
        if not quiet:
            console.print(f"backend: {predictor.backend}" + (f" ({predictor.backend_note})" if predictor.backend_note else ""))
        if plan:
            for source in cases:
                if source.dicom:  # no header-only geometry for a DICOM series
                    typer.echo(f"{source.name}: --plan reads NIfTI/NRRD headers only; skipped (DICOM series)")
                    continue
                typer.echo(f"{source.name}:\n{predictor.plan_files(list(source.paths), probabilities is not None).format()}")
            return
        task = bar.add_task("predict", total=None, status="")
        predictor.on_start = lambda total: bar.reset(task, total=total)
        predictor.on_windows = lambda n: bar.update(task, advance=n)
        context = RunContext(predictor, reason, describe(package), series_uid)

        def log(run: CaseRun) -> None:
            if run.status == "failed":
                typer.echo(f"error: case {run.case}: {run.error}", err=True)
            elif run.status == "skipped":
                console.print(f"skip {run.case}: {run.error}")
            elif not quiet:
                for line in run.input_lines:
                    console.print(f"{run.case}: {line}", markup=False, highlight=False, soft_wrap=True)
                console.print(f"done {run.case} ({run.timings.get('total', 0.0):.1f} s)")

        summary_name = "summary.csv" if distributed.world_size() == 1 else f"summary.rank{distributed.rank()}.csv"
        runs = run_cases(context, cases, targets, batch, force, output / summary_name if batch else None, log)
    failed = [r for r in runs if r.status == "failed"]
    if batch:
        ok = sum(r.status == "ok" for r in runs)
        skipped = sum(r.status == "skipped" for r in runs)
        console.print(f"{ok} done, {skipped} skipped, {len(failed)} failed: {output / summary_name}")
    if failed:
        raise typer.Exit(1)

