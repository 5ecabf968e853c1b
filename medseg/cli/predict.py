"""``medseg predict``: options and printing; the cases and output paths are decided in medseg.inference.jobs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from medseg.cli.options import DEVICE, FORCE, QUIET, number_in, parse_extras
from medseg.errors import MedsegInputError

if TYPE_CHECKING:  # annotations only: torch and MONAI load inside the command, so `medseg --help` stays instant
    from medseg.inference.batch import CaseRun


def predict(
    inputs: list[Path] | None = typer.Option(None, "-i", "--input", metavar="PATH", help="Image file (repeat -i per modality), a DICOM series folder, a folder of cases, or a list file (.txt/.csv)."),
    output: Path | None = typer.Option(None, "-o", "--output", metavar="PATH", help="Output label file (.nii.gz, .nrrd, ...), DICOM SEG (.dcm), or folder (always a folder in batch mode); optional with --send-to."),
    model: Path = typer.Option(..., "-m", "--model", metavar="PATH", help="Model package folder, or the name of a package under $MEDSEG_MODELS."),
    device: str = DEVICE,
    overlap: float | None = typer.Option(None, metavar="FLOAT", parser=number_in(0, 1, high_open=True), help="Sliding-window overlap, in [0, 1) (default: the package's, usually 0.5)."),
    sw_batch_size: int | None = typer.Option(None, min=1, metavar="N", help="Windows per network call."),
    tta: bool | None = typer.Option(None, "--tta/--no-tta", help="Mirroring test-time augmentation."),
    output_format: str | None = typer.Option(None, "--output-format", metavar="TEXT", help="nifti, dicom-seg or both (default: nifti; dicom-seg for a .dcm output). DICOM SEG needs a DICOM input."),
    series_uid: str | None = typer.Option(None, "--series-uid", "--series", metavar="UID", help="Which series of a DICOM folder (default: the one with the most slices), or of --study on the --dicomweb server (default: its largest CT, MR or PET series)."),
    dicomweb: str | None = typer.Option(None, "--dicomweb", metavar="URL", help="Pull the input from this DICOMweb server (QIDO-RS/WADO-RS; e.g. http://pacs:8042/dicom-web) instead of -i; needs --study."),
    study: str | None = typer.Option(None, "--study", metavar="UID", help="The StudyInstanceUID to pull with --dicomweb."),
    send_to: list[str] | None = typer.Option(None, "--send-to", metavar="TARGET", help="Send the DICOM SEG to a PACS (repeatable): AE@host:port (C-STORE, calling AE MEDSEG) or an http(s):// DICOMweb root (STOW-RS)."),
    token_env: str | None = typer.Option(None, "--token-env", metavar="NAME", help="Environment variable holding a bearer token for --dicomweb and DICOMweb --send-to."),
    ca: Path | None = typer.Option(None, "--ca", metavar="PATH", help="PEM bundle of the CA that signs the HTTPS certificates of --dicomweb and DICOMweb --send-to (a private CA; default: the system's trust store or REQUESTS_CA_BUNDLE)."),
    report: bool | None = typer.Option(None, "--report/--no-report", help="Per-case JSON report and PNG preview (default: on in batch mode)."),
    uncertainty: bool = typer.Option(False, "--uncertainty", help="Also write a voxel-wise entropy map (case.entropy.nii.gz); its per-label means go into the report."),
    probabilities: Path | None = typer.Option(None, metavar="PATH", help="Also write float probabilities (channels last), same geometry (a folder in batch mode)."),
    preview: Path | None = typer.Option(None, metavar="PATH", help="Also write a PNG preview (three orthogonal slices) (a folder in batch mode)."),
    stats: Path | None = typer.Option(None, metavar="PATH", help="Also write voxel counts and volumes (ml) per label as JSON (a folder in batch mode)."),
    modalities: str | None = typer.Option(
        None, "--modalities", metavar="TEXT",
        help="Modality of each -i image, comma-separated, in the order given (e.g. wat,fat,inn,opp): the images are put "
        "into the model's order. Without it, give -i in the model's order (medseg.json 'modalities'); file names that "
        "name a modality are checked against it.",
    ),
    layout: str | None = typer.Option(None, "--layout", metavar="NAME", help="Read a folder input as a registered dataset layout, e.g. brats (one folder per case: *_t1, *_t1ce, *_t2, *_flair)."),
    extra: list[str] | None = typer.Option(None, "--extra", metavar="NAME=PATH", help="Also write an output the model's head offers (repeatable), e.g. regions=regions.nii.gz for nested BraTS models (WT, TC, ET masks, channels last); a folder in batch mode."),
    force: bool = FORCE,
    quiet: bool = QUIET,
    plan: bool = typer.Option(False, "--plan", help="Print the memory plan of each case (from the headers) and exit."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the network (the first window batch pays the compile time)."),
    html: Path | None = typer.Option(None, "--html", metavar="PATH", help="Also write a case viewer: one self-contained HTML file (image, labels, volumes, warnings, provenance) that opens offline (a folder in batch mode)."),
    strict: bool = typer.Option(False, "--strict", help="Warnings are errors (unattended runs): a case with any warning (input outside the model's training data, ...) fails and writes nothing."),
    backend: str = typer.Option("auto", "--backend", metavar="TEXT", help="auto, torch, openvino or onnxruntime: what runs the network (auto: OpenVINO on the CPU when installed, else PyTorch); see README 'Speed'."),
) -> None:
    """Segment one case or a batch of cases; outputs keep the input's shape, affine and voxel size.

    One case: -i image files (one per modality) or a DICOM series folder; -o a label file, a .dcm DICOM
    SEG, or a folder. Batch: -i a folder of cases or a list file, -o a folder; outputs that exist are
    skipped (--force redoes them), a failing case is logged and the batch goes on, summary.csv lists every
    case, and the exit code is 1 if any case failed. Under torchrun, a batch is split across the
    processes (one GPU each; summary.rankN.csv per rank). From a PACS: --dicomweb URL --study UID
    [--series UID] instead of -i; --send-to AE@host:port or a DICOMweb URL sends the DICOM SEG back.
    """
    from medseg.gateway.remote import remote_io, send_seg
    from medseg.inference.jobs import PredictRequest, memory_plans, open_context, prepare_job, run_job
    from medseg.progress import console, make_progress, set_quiet

    set_quiet(quiet)
    with remote_io(inputs or [], output, output_format, dicomweb, study, series_uid, send_to or [], token_env, ca) as remote:
        request = PredictRequest(
            remote.inputs, remote.output, model, remote.output_format, series_uid, report, uncertainty, probabilities, preview, stats,
            modalities, layout, parse_extras(extra), force, case_name=remote.case_name, html=html,
        )
        job = prepare_job(request).shard()
        if remote.destinations and job.batch:
            raise MedsegInputError(None, "--send-to sends the DICOM SEG of one case (a DICOM series), not of a batch")
        context = open_context(model, device, overlap=overlap, sw_batch_size=sw_batch_size, tta=tta, compile=compile, series_uid=series_uid, strict=strict, backend=backend)
        predictor = context.predictor
        job = job.for_model(predictor.package)
        if device == "auto" and not quiet:
            console.print(f"device: {context.device_reason}")
        if not quiet:
            console.print(f"backend: {predictor.backend}" + (f" ({predictor.backend_note})" if predictor.backend_note else ""))
        if not quiet and predictor.head.describe():
            console.print(predictor.head.describe())
        if plan:
            for text in memory_plans(job, predictor):
                typer.echo(text)
            return
        with make_progress(not quiet) as bar:
            task = bar.add_task("predict", total=None, status="")
            predictor.on_start = lambda total: bar.reset(task, total=total)
            predictor.on_windows = lambda n: bar.update(task, advance=n)

            def log(run: CaseRun) -> None:
                for file, message in run.warnings:  # printed even with --quiet: a warning is never silent
                    typer.echo(f"warning: {file}: {' '.join(message.split())}", err=True)
                if run.status == "failed":
                    typer.echo(f"error: case {run.case}: {run.error}", err=True)
                elif run.status == "skipped":
                    console.print(f"skip {run.case}: {run.error}")
                elif not quiet:
                    for line in run.input_lines:
                        console.print(f"{run.case}: {line}", markup=False, highlight=False, soft_wrap=True)
                    console.print(f"done {run.case} ({run.timings.get('total', 0.0):.1f} s)")

            runs = run_job(job, context, log)
        failed = [r for r in runs if r.status == "failed"]
        if job.batch:
            ok = sum(r.status == "ok" for r in runs)
            skipped = sum(r.status == "skipped" for r in runs)
            console.print(f"{ok} done, {skipped} skipped, {len(failed)} failed: {job.summary}")
        if failed:
            raise typer.Exit(1)
        seg = job.targets(job.cases[0]).dicom_seg
        if remote.destinations and seg is not None:
            send_seg(seg, remote.destinations)
            if not quiet:
                console.print(f"sent {seg.name} to {', '.join(d.target for d in remote.destinations)}")
